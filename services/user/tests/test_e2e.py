"""End to end: the API, the worker and the mock provider as real processes, signed in to
with the command-line tool the README documents."""

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from common.kafka import ensure_topics
from common.testing.plugin import next_event, temporary_database
from common.testing.servers import MysqlServer, free_port, wait_for_port
from user.events import TOPIC

from .conftest import migrate, start_mock_provider, wait_for_provider

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def e2e_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    """A schema of its own: the worker here must not publish other tests' rows."""
    async with temporary_database(mysql_server, "user_e2e") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("user-e2e-logs")


@pytest.fixture(scope="module")
def stack(e2e_database: str, kafka_bootstrap: str, logs: Path) -> Iterator[dict[str, str]]:
    """The provider, the API and the worker; the environment the CLI runs with."""
    provider, issuer = start_mock_provider(logs / "provider.log")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "USER_DATABASE_URL": e2e_database,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "USER_PUBLIC_BASE_URL": base_url,
        "USER_OIDC_PROVIDERS": json.dumps(
            {
                "mock": {
                    "issuer": issuer,
                    "client_id": "ledgerline-e2e",
                    "client_secret": "e2e-s3cret",
                }
            }
        ),
        "USER_SECRET_KEY": "e2e-secret-key",
        "LOG_FORMAT": "json",
    }
    processes = []
    try:
        for name, command in {
            "api": [
                "-m",
                "uvicorn",
                "--factory",
                "user.main:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            "worker": ["-m", "user.worker"],
        }.items():
            with open(logs / f"{name}.log", "ab") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, *command],
                        env=environment,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        wait_for_provider(issuer)
        wait_for_port("127.0.0.1", port, timeout=60)
        yield {**environment, "BASE_URL": base_url}
    finally:
        for process in [*processes, provider]:
            process.terminate()
            process.wait(timeout=20)


def cli(environment: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "user.cli", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


async def test_the_cli_signs_in_through_the_running_service_and_the_worker_publishes(
    stack: dict[str, str], kafka_bootstrap: str, logs: Path
) -> None:
    subject = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
    base_url = stack["BASE_URL"]
    await ensure_topics(kafka_bootstrap, [TOPIC])
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"e2e-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        token = cli(stack, "token", "--provider", "mock", "--sub", subject, "--base-url", base_url)
        async with httpx.AsyncClient(base_url=base_url) as http:
            me = await http.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            registered = await next_event(
                consumer, lambda e: e.type == "user.registered" and e.subject == me.json()["id"]
            )

            rotated = cli(stack, "rotate-keys")
            after = cli(stack, "token", "--sub", subject, "--base-url", base_url, "--json")
            new_token = json.loads(after)["access_token"]
            for bearer_token in (token, new_token):
                still = await http.get(
                    "/api/users/me", headers={"Authorization": f"Bearer {bearer_token}"}
                )
                assert still.status_code == 200, still.text
    finally:
        await consumer.stop()

    assert registered.data["email"] == subject
    assert kid_of(new_token) != kid_of(token)
    assert kid_of(new_token) in rotated
    service_logs = (logs / "api.log").read_text() + (logs / "worker.log").read_text()
    assert '"event": "signed_in"' in service_logs
    for secret in (token, new_token, json.loads(after)["refresh_token"], "e2e-s3cret"):
        assert secret not in service_logs
