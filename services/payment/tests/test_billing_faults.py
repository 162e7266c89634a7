"""The billing run under faults, end to end with real processes: 10,000 invoices charged by
two payment workers through FakePay (20 ms a charge, 5% declines, 2% 5xx, and one outage
of the whole provider), every worker SIGKILLed twice mid-run and started again.

At the end FakePay's ledger holds exactly one charge per paid invoice and none for any
other, every invoice has exactly one outcome in the run, none is left unfinished, and the
report's counts are what the ledger and the rows say.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import IO

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.ids import uuid7
from common.testing.plugin import temporary_database
from common.testing.servers import MysqlServer
from payment import billing
from payment.config import PaymentSettings
from payment.models import BillingRunItem, InvoiceCopy, ItemOutcome, PaymentMethod
from payment.providers import CardDetails, SavedCard, create_provider
from simulators.testing import FakePayServer

from .conftest import migrate

INVOICES = 10_000
CLIENTS = 500
WORKERS = 2
# Outcomes after which nothing more happens to an invoice in this test: final ones, and a
# decline waiting for its retry days later.
SETTLED = {
    ItemOutcome.PAID,
    ItemOutcome.FAILED,
    ItemOutcome.RETRY_SCHEDULED,
    ItemOutcome.NO_PAYMENT_METHOD,
    ItemOutcome.ALREADY_PAID,
    ItemOutcome.SKIPPED,
}
SCHEDULED_FOR = datetime(2026, 11, 1, 10, 0)


@pytest.fixture(scope="module")
def fault_fakepay() -> Iterator[FakePayServer]:
    """A FakePay of this test alone: its ledger is read whole."""
    with FakePayServer() as server:
        yield server


@pytest.fixture
async def fault_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "payment_faults") as url:
        migrate(url)
        yield url


class Workers:
    """The payment worker processes, each with its own log."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        self.started = 0

    def start(self, count: int) -> None:
        for _ in range(count):
            self.started += 1
            log = (self.logs / f"worker-{self.started}.log").open("ab")
            process = subprocess.Popen(
                [sys.executable, "-m", "payment.worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.running.append((process, log))

    def kill_all(self) -> None:
        """SIGKILL: no clean-up of any kind runs."""
        for process, log in self.running:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            log.close()
        self.running = []

    def stop_all(self) -> None:
        for process, log in self.running:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            log.close()
        self.running = []


async def seed(
    sessionmaker: async_sessionmaker[AsyncSession], settings: PaymentSettings
) -> list[uuid.UUID]:
    """500 clients with a card in FakePay's vault, 20 due invoices each."""
    owner = uuid.uuid4()
    invoice_ids = [uuid.uuid4() for _ in range(INVOICES)]
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=20)) as http:
        provider = create_provider(settings, http)

        async def vault(client_id: int) -> dict[str, object]:
            number = f"4111 1111 {client_id:04d} 4242"
            saved = await provider.save_card(CardDetails(SecretStr(number), "01-2040", "J Doe"))
            assert isinstance(saved, SavedCard)
            now = billing.utc_clock()
            return {
                "id": uuid7(),
                "owner_id": owner,
                "client_id": client_id,
                "provider": "fakepay",
                "provider_token": saved.token,
                "card_number_masked": saved.masked_number,
                "card_last4": saved.last4,
                "card_expiry": "01-2040",
                "card_name": "J Doe",
                "autopay_consent_at": now,
                "created_at": now,
            }

        methods = await asyncio.gather(*(vault(n) for n in range(1, CLIENTS + 1)))
    now = billing.utc_clock()
    invoices = [
        {
            "invoice_id": invoice_id,
            "owner_id": owner,
            "client_id": 1 + n % CLIENTS,
            "client_email": "ap@client.test",
            "client_name": "Client",
            "amount": f"{10 + n % 90}.50",
            "currency": "USD",
            "status": "pending" if n % 3 else "past_due",
            "due_date": date(2026, 10, 31),
            "updated_at": now,
        }
        for n, invoice_id in enumerate(invoice_ids)
    ]
    async with sessionmaker() as session, session.begin():
        await session.execute(insert(PaymentMethod), methods)
        for start in range(0, INVOICES, 2000):
            await session.execute(insert(InvoiceCopy), invoices[start : start + 2000])
    return invoice_ids


async def settled_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).where(BillingRunItem.outcome.in_(list(SETTLED)))
            )
            or 0
        )


async def wait_until_settled(
    sessionmaker: async_sessionmaker[AsyncSession], at_least: int, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    while await settled_count(sessionmaker) < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"only {await settled_count(sessionmaker)} of {at_least} invoices settled"
            )
        await asyncio.sleep(0.2)


async def test_a_run_killed_twice_charges_every_invoice_exactly_once(
    fault_database: str,
    fault_fakepay: FakePayServer,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    settings = PaymentSettings(
        environment="test",
        database_url=SecretStr(fault_database),
        fakepay_url=fault_fakepay.url,
        kafka_bootstrap_servers=kafka_bootstrap,
    )
    fakepay = fault_fakepay.control_client()
    engine = create_engine(fault_database, pool_size=4)
    sessionmaker = create_sessionmaker(engine)
    try:
        invoice_ids = await seed(sessionmaker, settings)
        async with httpx.AsyncClient() as http:
            starter = billing.Billing(sessionmaker, create_provider(settings, http), settings)
            run = await billing.start_run(starter, SCHEDULED_FOR, SCHEDULED_FOR.date())
        assert run is not None
        fakepay.behave(latency_ms=20, decline_rate=0.05, error_rate=0.02)

        env = {
            **os.environ,
            "ENVIRONMENT": "test",
            "LOG_LEVEL": "WARNING",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "PAYMENT_DATABASE_URL": fault_database,
            "PAYMENT_FAKEPAY_URL": fault_fakepay.url,
            # The workers only charge: the run was started above, and no other is due.
            "PAYMENT_BILLING_MAX_LATENESS_DAYS": "0",
            "PAYMENT_BILLING_TICK_SECONDS": "0.5",
            "PAYMENT_BILLING_CONCURRENCY": "24",
            # Short, so the killed workers' claims pass soon and the outage is waited out.
            "PAYMENT_BILLING_CLAIM_SECONDS": "4",
            "PAYMENT_BILLING_UNAVAILABLE_RETRY_SECONDS": "2",
            "PAYMENT_BILLING_NETWORK_BACKOFF_SECONDS": "0.05",
            "PAYMENT_BILLING_NETWORK_BACKOFF_MAX_SECONDS": "0.5",
            "PAYMENT_PROVIDER_TIMEOUT_SECONDS": "2",
        }
        workers = Workers(env, tmp_path)
        try:
            workers.start(WORKERS)
            await wait_until_settled(sessionmaker, INVOICES // 5, seconds=90)
            workers.kill_all()

            # The provider goes down while nobody runs, and stays down as they come back.
            fakepay.fault("error", seconds=3)
            workers.start(WORKERS)
            await wait_until_settled(sessionmaker, INVOICES // 2, seconds=90)
            workers.kill_all()

            workers.start(WORKERS)
            await wait_until_settled(sessionmaker, INVOICES, seconds=150)
        finally:
            workers.stop_all()

        async with sessionmaker() as session:
            items = (
                await session.execute(
                    select(BillingRunItem.invoice_id, BillingRunItem.outcome).where(
                        BillingRunItem.run_id == run.id
                    )
                )
            ).all()
            report = await billing.outcome_counts(session, run.id)
        ledger = fakepay.ledger()
    finally:
        await engine.dispose()

    # Every invoice exactly once in the run, each with a settled outcome.
    outcome_of = dict(items)
    assert len(items) == INVOICES
    assert set(outcome_of) == set(invoice_ids)
    assert set(outcome_of.values()) <= {o.value for o in SETTLED}
    # One successful charge per paid invoice, none for any other.
    charges = Counter(uuid.UUID(entry.reference or "") for entry in ledger)
    paid = {invoice_id for invoice_id, outcome in outcome_of.items() if outcome == "paid"}
    assert max(charges.values()) == 1
    assert set(charges) == paid
    # The report says what the rows and the ledger say.
    assert report == dict(Counter(outcome_of.values()))
    assert report["paid"] == len(ledger)
    # The faults were real: declines waiting for their retry, and everything else paid.
    assert report["retry_scheduled"] > INVOICES * 0.03
    assert report["paid"] + report["retry_scheduled"] == INVOICES
    print(f"\nfault run: {report}, {workers.started} worker processes")
