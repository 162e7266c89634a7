"""End to end: the API and the worker as real processes behind the nginx gateway, events
read off the real topic.

One test sees an invoice's event arrive; another stops the worker after the commit and
before the publish, kills it, starts a new one and sees the event published all the same.
The gateway's own duties (request ids, limits, headers) are checked against the real API.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select

from common.db import create_engine, create_sessionmaker
from common.kafka import ensure_topics
from common.testing.gateway import GatewayConfig, start_gateway
from common.testing.identity import ISSUER, TestIssuer
from common.testing.plugin import next_event, temporary_database
from common.testing.servers import MysqlServer, free_port, logged_process, wait_for_port
from invoice.events import TOPIC
from invoice.models import OutboxMessage
from invoice.service import today_utc

from .conftest import migrate

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def e2e_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    """A schema of its own: the processes' worker must not touch other tests' rows."""
    async with temporary_database(mysql_server, "invoice_e2e") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def environment(
    e2e_database: str,
    kafka_bootstrap: str,
    test_issuer: TestIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    return {
        **os.environ,
        "INVOICE_DATABASE_URL": e2e_database,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AUTH_JWKS_URL": test_issuer.jwks_url,
        "AUTH_ISSUER": ISSUER,
        "INVOICE_CURSOR_SECRET": "e2e-cursor-secret",
        "INVOICE_PAST_DUE_SWEEP_SECONDS": "0.5",
        "LOG_FORMAT": "json",
        "E2E_LOGS": str(tmp_path_factory.mktemp("e2e-logs")),
    }


def start_worker(env: dict[str, str]) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return logged_process("worker", [sys.executable, "-m", "invoice.worker"], env)


@pytest.fixture(scope="module")
def api_url(environment: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "invoice.main:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with logged_process("api", command, environment):
        wait_for_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def gateway_url(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway in front of the API; nothing listens where the user service would be."""
    config = GatewayConfig(
        port=free_port(),
        user_upstream=f"127.0.0.1:{free_port()}",
        invoice_upstream=api_url.removeprefix("http://"),
        api_rate="5r/s",
        api_burst=20,
    )
    run_dir = tmp_path_factory.mktemp("gateway")
    gateway = start_gateway(config, run_dir)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        gateway.terminate()
        gateway.wait(10)


@pytest.fixture
async def events(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    await ensure_topics(kafka_bootstrap, [TOPIC])
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    yield consumer
    await consumer.stop()


async def create_invoice(api_url: str, headers: dict[str, str], due_date: str) -> str:
    async with httpx.AsyncClient(base_url=api_url, headers=headers) as api:
        client = await api.post(
            "/api/clients", json={"name": "Globex", "email": "billing@globex.example"}
        )
        assert client.status_code == 201, client.text
        invoice = await api.post(
            "/api/invoices",
            json={
                "client_id": client.json()["id"],
                "description": "Consulting, November",
                "amount": "1200.00",
                "due_date": due_date,
            },
        )
        assert invoice.status_code == 201, invoice.text
        return str(invoice.json()["id"])


async def test_an_invoice_created_over_http_arrives_on_the_topic(
    gateway_url: str,
    environment: dict[str, str],
    test_issuer: TestIssuer,
    events: AIOKafkaConsumer,
) -> None:
    owner = uuid.uuid4()
    yesterday = (today_utc() - timedelta(days=1)).isoformat()
    with start_worker(environment):
        invoice_id = await create_invoice(gateway_url, test_issuer.headers(owner), yesterday)

        created = await next_event(events, lambda e: e.data.get("invoice_id") == invoice_id)
        past_due = await next_event(
            events,
            lambda e: e.type == "invoice.status_changed" and e.data["invoice_id"] == invoice_id,
        )

    assert created.type == "invoice.created"
    assert created.subject == str(owner)
    assert created.data["amount"] == "1200.00"
    assert past_due.data["status"] == "past_due"


async def test_an_event_committed_before_the_worker_dies_is_published_after_restart(
    gateway_url: str,
    environment: dict[str, str],
    e2e_database: str,
    test_issuer: TestIssuer,
    events: AIOKafkaConsumer,
) -> None:
    headers = test_issuer.headers(uuid.uuid4())
    with start_worker(environment) as worker:
        warm_up = await create_invoice(gateway_url, headers, "2031-06-30")
        await next_event(events, lambda e: e.data.get("invoice_id") == warm_up)  # relay is live
        worker.send_signal(signal.SIGSTOP)  # the relay is frozen: commits happen, sends don't
        invoice_id = await create_invoice(gateway_url, headers, "2031-06-30")
        assert await _staged_events(e2e_database, invoice_id) == 1
        worker.kill()
        worker.wait(10)

    with start_worker(environment):
        published = await next_event(events, lambda e: e.data.get("invoice_id") == invoice_id)

    assert published.type == "invoice.created"
    assert await _staged_events(e2e_database, invoice_id) == 0


async def _staged_events(database_url: str, invoice_id: str) -> int:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.payload.contains(invoice_id))
            )
        return count or 0
    finally:
        await engine.dispose()


async def test_the_gateway_passes_a_request_id_that_the_service_logs(
    gateway_url: str, environment: dict[str, str], test_issuer: TestIssuer
) -> None:
    request_id = f"e2e-{uuid.uuid4().hex}"

    async with httpx.AsyncClient(base_url=gateway_url) as gateway:
        response = await gateway.get(
            "/api/invoices",
            headers={**test_issuer.headers(uuid.uuid4()), "X-Request-ID": request_id},
        )
        generated = await gateway.get("/api/invoices", headers={"X-Request-ID": "bad id;drop"})

    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    logged = [
        json.loads(line)
        for line in (Path(environment["E2E_LOGS"]) / "api.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert any(entry.get("request_id") == request_id for entry in logged)
    assert generated.headers["x-request-id"] != "bad id;drop"


async def test_the_gateway_refuses_a_large_body_before_the_service(
    gateway_url: str, test_issuer: TestIssuer
) -> None:
    async with httpx.AsyncClient(base_url=gateway_url) as gateway:
        response = await gateway.post(
            "/api/clients",
            content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
            headers={**test_issuer.headers(uuid.uuid4()), "content-type": "application/json"},
        )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_client_over_the_rate_limit_is_told_when_to_retry(
    gateway_url: str, test_issuer: TestIssuer
) -> None:
    headers = test_issuer.headers(uuid.uuid4())

    async with httpx.AsyncClient(base_url=gateway_url, headers=headers) as gateway:
        responses = await asyncio.gather(*(gateway.get("/health-check") for _ in range(5)))
        responses += await asyncio.gather(*(gateway.get("/api/invoices") for _ in range(40)))

    limited = [r for r in responses if r.status_code == 429]
    assert limited, "40 requests at once exceed a burst of 20"
    assert all(r.status_code in (200, 429) for r in responses)
    assert limited[0].headers["retry-after"] == "1"
    assert limited[0].headers["content-type"] == "application/problem+json"
    assert limited[0].json()["status"] == 429
