"""The whole suite as it runs for real: an OpenID Connect provider (oidc-provider-mock), the
user and invoice services' APIs and workers as processes, and the nginx gateway in front.
Tests act as browsers and API clients against the gateway only."""

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.testing.gateway import GatewayConfig, start_gateway
from common.testing.plugin import migrate_schema, temporary_database
from common.testing.servers import MysqlServer, free_port, wait_for_port

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Suite:
    gateway: str
    user_api: str
    invoice_api: str
    provider: str


def migrate(service: str, database_url: str) -> None:
    alembic_ini = REPOSITORY / "services" / service / "alembic.ini"
    migrate_schema(alembic_ini, service.upper(), database_url)


class Processes:
    """Children of the test session, each logging to its own file, stopped in reverse."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.children.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            )

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.terminate()
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


def uvicorn(factory: str, port: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "uvicorn", "--factory", factory),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
    ]


@pytest.fixture(scope="session")
async def databases(mysql_server: MysqlServer) -> AsyncIterator[dict[str, str]]:
    async with (
        temporary_database(mysql_server, "e2e_user") as user_url,
        temporary_database(mysql_server, "e2e_invoice") as invoice_url,
    ):
        migrate("user", user_url)
        migrate("invoice", invoice_url)
        yield {"user": user_url, "invoice": invoice_url}


@pytest.fixture(scope="session")
def suite(
    databases: dict[str, str], kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Suite]:
    ports = {name: free_port() for name in ("gateway", "user", "invoice", "provider")}
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    user_api = f"http://127.0.0.1:{ports['user']}"
    provider = f"http://127.0.0.1:{ports['provider']}"
    shared = {
        **os.environ,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "json",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AUTH_JWKS_URL": f"{user_api}/.well-known/jwks.json",
    }
    user_env = {
        **shared,
        "USER_DATABASE_URL": databases["user"],
        "USER_PUBLIC_BASE_URL": gateway,
        "USER_SECRET_KEY": "e2e-secret-key-for-sealing",
        "USER_OIDC_PROVIDERS": json.dumps(
            {
                "mock": {
                    "issuer": provider,
                    "client_id": "ledgerline-e2e",
                    "client_secret": "e2e-client-secret",
                }
            }
        ),
    }
    invoice_env = {
        **shared,
        "INVOICE_DATABASE_URL": databases["invoice"],
        "INVOICE_CURSOR_SECRET": "e2e-cursor-secret",
    }
    logs = tmp_path_factory.mktemp("suite-logs")
    processes = Processes(logs)
    try:
        provider_command = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1"]
        processes.start(
            "provider", [*provider_command, "--port", str(ports["provider"])], dict(os.environ)
        )
        processes.start("user-api", uvicorn("user.main:create_app", ports["user"]), user_env)
        processes.start("user-worker", [sys.executable, "-m", "user.worker"], user_env)
        processes.start(
            "invoice-api", uvicorn("invoice.main:create_app", ports["invoice"]), invoice_env
        )
        processes.start("invoice-worker", [sys.executable, "-m", "invoice.worker"], invoice_env)
        for port in (ports["provider"], ports["user"], ports["invoice"]):
            wait_for_port("127.0.0.1", port)
        gateway_process = start_gateway(
            GatewayConfig(
                port=ports["gateway"],
                user_upstream=f"127.0.0.1:{ports['user']}",
                invoice_upstream=f"127.0.0.1:{ports['invoice']}",
            ),
            tmp_path_factory.mktemp("gateway"),
        )
        processes.children.append(gateway_process)
        yield Suite(
            gateway=gateway,
            user_api=user_api,
            invoice_api=f"http://127.0.0.1:{ports['invoice']}",
            provider=provider,
        )
    finally:
        processes.stop_all()


@dataclass
class SignedIn:
    """A user signed in through the gateway: their tokens and a client that sends them."""

    user_id: str
    access_token: str
    refresh_token: str
    api: httpx.AsyncClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def sign_in(suite: Suite, browser: httpx.AsyncClient, subject: str) -> dict[str, Any]:
    """A browser's way through sign-in, all of it through the gateway but the provider's page."""
    start = await browser.get(f"{suite.gateway}/api/auth/mock/login")
    assert start.status_code == 302, start.text
    assert start.headers["location"].startswith(suite.provider)
    form = await browser.post(
        start.headers["location"], data={"sub": subject, "action": "authorize"}
    )
    assert form.status_code == 302, form.text
    assert form.headers["location"].startswith(f"{suite.gateway}/api/auth/mock/callback")
    done = await browser.get(form.headers["location"])
    assert done.status_code == 200, done.text
    tokens: dict[str, Any] = done.json()
    return tokens


@pytest.fixture
async def sign_in_as(suite: Suite) -> AsyncIterator[Any]:
    """Signs in a new provider account; the signed-in user's API client."""
    opened: list[httpx.AsyncClient] = []

    async def signed_in(subject: str) -> SignedIn:
        browser = httpx.AsyncClient(timeout=15)
        opened.append(browser)
        tokens = await sign_in(suite, browser, subject)
        api = httpx.AsyncClient(
            base_url=suite.gateway,
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=15,
        )
        opened.append(api)
        return SignedIn(
            user_id=str(tokens["user_id"]),
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            api=api,
        )

    yield signed_in
    for client in opened:
        await client.aclose()
