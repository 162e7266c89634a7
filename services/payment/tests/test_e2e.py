"""End to end: the payment API and worker as real processes, FakePay as its own process,
events read off the real topic.

One test kills the API (SIGKILL) while FakePay holds the answer to a charge it has already
taken: after a restart the worker settles the attempt with FakePay, the payment is
succeeded, `payment.succeeded` is on the topic and FakePay shows one charge. Another runs
card payments of every outcome and then looks through everything the run left behind (the
processes' logs, the topic, every text column of the schema) for the full card numbers.
"""

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from common.db import create_engine
from common.events import CloudEvent
from common.kafka import ensure_topics
from common.testing.identity import ISSUER, TestIssuer
from common.testing.plugin import next_event, temporary_database
from common.testing.servers import MysqlServer, free_port, logged_process, wait_for_port
from payment.events import TOPIC
from simulators.testing import FakePayControl, FakePayServer

from .conftest import migrate
from .factories import DECLINED_CARD, SEED_CARD, SEED_CARD_SPACED, card, invoice_payment

pytestmark = pytest.mark.e2e

PROVIDER_TIMEOUT = 3.0
# A worker process takes seconds to start, and many more on a busy two-core machine; the
# waits below end as soon as what they wait for has happened.
STARTUP_ALLOWANCE = 90


@pytest.fixture(scope="module")
async def e2e_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    """A schema of its own: the processes' worker must not touch other tests' rows."""
    async with temporary_database(mysql_server, "payment_e2e") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def environment(
    e2e_database: str,
    kafka_bootstrap: str,
    test_issuer: TestIssuer,
    fakepay_server: FakePayServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    return {
        **os.environ,
        "PAYMENT_DATABASE_URL": e2e_database,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AUTH_JWKS_URL": test_issuer.jwks_url,
        "AUTH_ISSUER": ISSUER,
        "PAYMENT_CURSOR_SECRET": "e2e-cursor-secret",
        "PAYMENT_FAKEPAY_URL": fakepay_server.url,
        "PAYMENT_PROVIDER_TIMEOUT_SECONDS": str(PROVIDER_TIMEOUT),
        "PAYMENT_RECONCILE_GRACE_SECONDS": "1",
        "PAYMENT_RECONCILE_EVERY_SECONDS": "0.5",
        # Every line the code can write, so the search for card numbers sees all of them.
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        "E2E_LOGS": str(tmp_path_factory.mktemp("payment-e2e-logs")),
    }


def start_worker(env: dict[str, str]) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return logged_process("worker", [sys.executable, "-m", "payment.worker"], env)


@contextmanager
def start_api(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    command = [
        *(sys.executable, "-m", "uvicorn", "--factory", "payment.main:create_app"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    with logged_process("api", command, env) as child:
        wait_for_port("127.0.0.1", port, timeout=STARTUP_ALLOWANCE)
        yield f"http://127.0.0.1:{port}", child


@pytest.fixture
async def events(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    await ensure_topics(kafka_bootstrap, [TOPIC])
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    yield consumer
    await consumer.stop()


async def _wait_for_charge(fakepay: FakePayControl, transaction_id: str) -> None:
    for _ in range(200):
        if fakepay.ledger(transaction_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("FakePay never took the charge")


async def _payment_of_invoice(
    api: httpx.AsyncClient, invoice_id: str, status: str
) -> dict[str, Any]:
    """The owner's payment of the invoice once it has the status (the listing is polled)."""
    async with asyncio.timeout(STARTUP_ALLOWANCE):
        while True:
            listed = (await api.get("/api/payments", params={"limit": 100})).json()["items"]
            for payment in listed:
                if payment["invoice_id"] == invoice_id and payment["status"] == status:
                    return dict(payment)
            await asyncio.sleep(0.2)


async def _status_in_schema(database_url: str, invoice_id: str) -> list[str]:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT status FROM payments WHERE invoice_id = :id"),
                {"id": uuid.UUID(invoice_id).bytes},
            )
            return [row.status for row in rows]
    finally:
        await engine.dispose()


async def test_a_charge_taken_while_the_api_was_killed_is_settled_after_restart(
    environment: dict[str, str],
    e2e_database: str,
    test_issuer: TestIssuer,
    fakepay: FakePayControl,
    events: AIOKafkaConsumer,
) -> None:
    headers = test_issuer.headers(uuid.uuid4())
    body = invoice_payment()
    invoice_id = body["invoice_id"]
    # FakePay takes the money, then sits on its answer for longer than the test lasts.
    fakepay.fault("accept_then_hang", transaction_id=invoice_id, delay=60, times=1)

    with start_api(environment) as (api_url, api_process):
        async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api:
            paying = asyncio.create_task(api.post("/internal/invoice-payments", json=body))
            await _wait_for_charge(fakepay, invoice_id)
            api_process.send_signal(signal.SIGKILL)  # between FakePay's yes and our commit
            api_process.wait(10)
            with pytest.raises(httpx.TransportError):
                await paying
    assert await _status_in_schema(e2e_database, invoice_id) == ["processing"]

    with start_api(environment) as (api_url, _), start_worker(environment):
        async with httpx.AsyncClient(base_url=api_url, headers=headers) as api:
            settled = await _payment_of_invoice(api, invoice_id, "succeeded")
            published = await next_event(
                events,
                lambda e: e.data.get("invoice_id") == invoice_id,
                within_seconds=STARTUP_ALLOWANCE,
            )
            again = await api.post("/internal/invoice-payments", json=body)

    assert published.type == "payment.succeeded"
    assert published.data["payment_id"] == settled["id"]
    assert published.data["kind"] == "invoice"
    assert again.status_code == 200
    assert again.json()["id"] == settled["id"]
    assert len(fakepay.ledger(invoice_id)) == 1


# The numbers this run sends; none may be found anywhere afterwards, spaced or not.
CARDS_USED = [
    SEED_CARD,
    SEED_CARD_SPACED,
    DECLINED_CARD,
    "4111 1111 1111 1111",
    "5555555555554444",
    SEED_CARD + "1234",  # too long: refused, and not echoed either
]
CVV_USED = "7373"


async def test_no_full_card_number_is_logged_published_or_stored(
    environment: dict[str, str],
    e2e_database: str,
    test_issuer: TestIssuer,
    fakepay_server: FakePayServer,
    fakepay: FakePayControl,
    events: AIOKafkaConsumer,
) -> None:
    headers = test_issuer.headers(uuid.uuid4())
    timed_out = invoice_payment(card=card(number="5555555555554444", cvv=CVV_USED))
    fakepay.fault("accept_then_hang", transaction_id=timed_out["invoice_id"], delay=10, times=1)
    failing = invoice_payment(card=card(number="4111 1111 1111 1111"))
    fakepay.fault("error", transaction_id=failing["invoice_id"], times=1)
    requests = [
        ("/internal/invoice-payments", invoice_payment(card=card(cvv=CVV_USED)), 201),
        ("/internal/invoice-payments", invoice_payment(card=card(number=SEED_CARD_SPACED)), 201),
        ("/internal/invoice-payments", invoice_payment(card=card(number=DECLINED_CARD)), 402),
        ("/internal/invoice-payments", invoice_payment(card=card(expiry="01-2001")), 422),
        ("/internal/invoice-payments", invoice_payment(card=card(number=SEED_CARD + "1234")), 422),
        ("/internal/invoice-payments", failing, 503),
        ("/internal/invoice-payments", timed_out, 503),
        ("/api/wallet/topups", {"amount": "5.00", "currency": "USD", "card": card()}, 201),
        (
            "/api/wallet/topups",
            {"amount": "5.00", "currency": "USD", "card": card(number=DECLINED_CARD)},
            402,
        ),
    ]

    with start_api(environment) as (api_url, _), start_worker(environment):
        async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api:
            for path, body, expected in requests:
                response = await api.post(path, json=body)
                assert response.status_code == expected, (path, response.text)
                assert not _card_numbers_in(response.text)
            # The worker settles the timed-out charge; its event is the last one to wait for.
            await next_event(
                events,
                lambda e: e.data.get("invoice_id") == timed_out["invoice_id"],
                within_seconds=STARTUP_ALLOWANCE,
            )

    logs = [*_read_logs(Path(environment["E2E_LOGS"])), fakepay_server.log()]
    published = await _everything_on_the_topic(environment["KAFKA_BOOTSTRAP_SERVERS"])
    stored = await _every_text_value(e2e_database)

    assert any("payment_succeeded" in log for log in logs)  # the logs are the right ones
    assert len(published) >= 6
    assert len(stored) > 50
    assert _card_numbers_in("\n".join(logs)) == []
    assert _card_numbers_in("\n".join(published)) == []
    assert _card_numbers_in("\n".join(stored)) == []
    # The CVV as a value of its own: its four digits also turn up by chance inside the hex
    # of ids, which are not it.
    cvv = re.compile(rf"(?<![0-9A-Za-z-]){CVV_USED}(?![0-9A-Za-z-])")
    assert not any(cvv.search(value) or "cvv" in value for value in published + stored)


def _card_numbers_in(haystack: str) -> list[str]:
    """The test cards found in the text, written with or without spaces."""
    found = []
    squeezed = re.sub(r"(?<=\d) (?=\d)", "", haystack)
    for number in CARDS_USED:
        digits = number.replace(" ", "")
        if digits in squeezed or number in haystack:
            found.append(number)
    return found


def _read_logs(directory: Path) -> list[str]:
    return [path.read_text() for path in directory.glob("*.log")]


async def _everything_on_the_topic(bootstrap_servers: str) -> list[str]:
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    values: list[str] = []
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=2000)
            if not batches:
                return values
            for records in batches.values():
                for record in records:
                    CloudEvent.model_validate_json(record.value)
                    values.append(record.value.decode())
    finally:
        await consumer.stop()


async def _every_text_value(database_url: str) -> list[str]:
    """Every value of every character column of the payment schema."""
    engine = create_engine(database_url, pool_size=1)
    values: list[str] = []
    try:
        async with engine.connect() as connection:
            columns = await connection.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = DATABASE() AND data_type IN "
                    "('char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext')"
                )
            )
            for table, column in columns.all():
                rows = await connection.execute(text(f"SELECT `{column}` FROM `{table}`"))  # noqa: S608
                values += [str(value) for (value,) in rows if value is not None]
    finally:
        await engine.dispose()
    return values
