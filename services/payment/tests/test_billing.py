"""The monthly billing run against real MariaDB and a real FakePay process: when a run
starts, one run per fire time, each provider outcome, decline retries, resuming after a
crash without a second charge, and the API that shows it. The clock is a test's own."""

import asyncio
import os
import sys
import uuid
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, make_url, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from common.metrics import sample
from common.testing.fault_proxy import FaultProxy
from common.testing.identity import TestIssuer
from payment import billing, consumers
from payment.config import PaymentSettings
from payment.models import (
    BillingRun,
    BillingRunItem,
    InvoiceCopy,
    ItemOutcome,
    ItemState,
    Payment,
    PaymentMethod,
    PaymentStatus,
    RunStatus,
    SchedulerLock,
)
from payment.service import Charging
from simulators.testing import FakePayControl

from .factories import staged_events

GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"  # FakePay: insufficient funds
ERROR_CARD = "4000 0000 0000 0119"  # FakePay: 503 every time
MISMATCH_CARD = "4000 0000 0000 0127"  # FakePay: currency_mismatch

FIRE_TIME = datetime(2027, 1, 1, 10, 0)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def clean_billing(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[None]:
    """Runs take every due invoice of the schema, so each test starts with none."""

    async def wipe() -> None:
        async with sessionmaker() as session, session.begin():
            for model in (BillingRunItem, BillingRun, InvoiceCopy, SchedulerLock, PaymentMethod):
                await session.execute(delete(model))

    await wipe()
    yield
    await wipe()


@pytest.fixture
def clock() -> Clock:
    return Clock(FIRE_TIME + timedelta(minutes=1))


@pytest.fixture
def billing_settings(settings: PaymentSettings) -> PaymentSettings:
    # Fast backoff: a test's provider outage costs milliseconds, not seconds.
    return settings.model_copy(
        update={
            "billing_network_attempts": 3,
            "billing_network_backoff_seconds": 0.01,
            "billing_network_backoff_max_seconds": 0.05,
            "billing_concurrency": 8,
        }
    )


@pytest.fixture
def worker(
    charging: Charging, billing_settings: PaymentSettings, clock: Clock, clean_billing: None
) -> billing.Billing:
    return billing.Billing(charging.sessionmaker, charging.provider, billing_settings, clock)


def metric(name: str, **labels: str) -> float:
    return sample(name, labels) or 0.0


@dataclass
class Client:
    owner: uuid.UUID
    client_id: int
    headers: dict[str, str]


_next_client = iter(range(1_000_000, 2_000_000))


async def add_client(
    api: httpx.AsyncClient, issuer: TestIssuer, owner: uuid.UUID, card_number: str | None
) -> Client:
    client = Client(owner, next(_next_client), issuer.headers(owner))
    if card_number is not None:
        response = await api.post(
            "/api/payment-methods",
            json={
                "client_id": client.client_id,
                "card": {"number": card_number, "expiry": "01-2040", "name": "J Doe"},
                "autopay_consent": True,
            },
            headers=client.headers,
        )
        assert response.status_code == 201, response.text
    return client


async def add_invoice(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client,
    amount: str = "120.00",
    currency: str = "USD",
    status: str = "pending",
    due: date = date(2026, 12, 31),
) -> uuid.UUID:
    """An invoice as the invoice service announces it, through the real handler."""
    invoice_id = uuid.uuid4()
    event = CloudEvent(
        source="/services/invoice",
        type="invoice.created",
        subject=str(client.owner),
        data={
            "invoice_id": str(invoice_id),
            "number": "INV-000042",
            "client_id": client.client_id,
            "client_name": "Acme Ltd",
            "client_email": "billing@acme.test",
            "description": "Consulting",
            "amount": amount,
            "currency": currency,
            "status": status,
            "due_date": due.isoformat(),
        },
    )
    async with sessionmaker() as session, session.begin():
        await consumers.on_invoice_created(session, event)
    return invoice_id


async def item_of(
    sessionmaker: async_sessionmaker[AsyncSession], invoice_id: uuid.UUID
) -> BillingRunItem:
    async with sessionmaker() as session:
        item = await session.scalar(
            select(BillingRunItem).where(BillingRunItem.invoice_id == invoice_id)
        )
    assert item is not None
    return item


async def events_of(
    sessionmaker: async_sessionmaker[AsyncSession], invoice_id: uuid.UUID
) -> list[tuple[str, dict[str, Any]]]:
    events = await staged_events(sessionmaker, str(invoice_id))
    return [(event.type, event.data) for event in events]


def charges_for(fakepay: FakePayControl, invoice_id: uuid.UUID) -> int:
    return sum(1 for entry in fakepay.ledger() if entry.reference == str(invoice_id))


# --- payment methods --------------------------------------------------------------------------


async def test_a_saved_card_keeps_only_the_token_and_the_masked_number(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    clean_billing: None,
) -> None:
    client = await add_client(api, test_issuer, owner, GOOD_CARD)
    listed = await api.get(
        "/api/payment-methods", params={"client_id": client.client_id}, headers=client.headers
    )
    assert listed.status_code == 200
    [method] = listed.json()["items"]
    assert method["card"]["number"] == "424242********4242"
    async with sessionmaker() as session:
        row = await session.get(PaymentMethod, uuid.UUID(method["id"]))
    assert row is not None
    assert row.provider_token.startswith("pm_")
    assert "4242424242424242" not in repr(vars(row))

    other = test_issuer.headers(uuid.uuid4())
    assert (
        await api.delete(f"/api/payment-methods/{method['id']}", headers=other)
    ).status_code == 404
    removed = await api.delete(f"/api/payment-methods/{method['id']}", headers=client.headers)
    assert removed.status_code == 204
    listed = await api.get(
        "/api/payment-methods", params={"client_id": client.client_id}, headers=client.headers
    )
    assert listed.json()["items"] == []


async def test_a_payment_method_needs_consent_and_a_valid_card(
    api: httpx.AsyncClient, auth: dict[str, str], clean_billing: None
) -> None:
    card = {"number": GOOD_CARD, "expiry": "01-2040", "name": "J Doe"}
    no_consent = await api.post(
        "/api/payment-methods",
        json={"client_id": 5, "card": card, "autopay_consent": False},
        headers=auth,
    )
    assert no_consent.status_code == 422
    assert "autopay_consent" in no_consent.text
    bad_number = await api.post(
        "/api/payment-methods",
        json={"client_id": 5, "card": {**card, "number": "12ab"}, "autopay_consent": True},
        headers=auth,
    )
    assert bad_number.status_code == 422
    assert "12ab" not in bad_number.text


# --- starting: the schedule and the lease -----------------------------------------------------


async def test_the_lease_is_held_by_one_worker_until_it_expires(
    sessionmaker: async_sessionmaker[AsyncSession], clean_billing: None
) -> None:
    now = datetime(2027, 1, 1, 10, 0)
    assert await billing.acquire_lease(sessionmaker, "job", "a", now, 60)
    assert not await billing.acquire_lease(sessionmaker, "job", "b", now, 60)
    assert not await billing.acquire_lease(
        sessionmaker, "job", "b", now + timedelta(seconds=59), 60
    )
    assert await billing.acquire_lease(sessionmaker, "job", "b", now + timedelta(seconds=60), 60)
    await billing.release_lease(sessionmaker, "job", "b", now + timedelta(seconds=61))
    assert await billing.acquire_lease(sessionmaker, "job", "c", now + timedelta(seconds=61), 60)


async def test_a_run_is_due_at_the_cron_time_in_utc_and_starts_once(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    clock: Clock,
) -> None:
    client = await add_client(api, test_issuer, owner, GOOD_CARD)
    due = await add_invoice(sessionmaker, client, due=date(2027, 1, 1))
    await add_invoice(sessionmaker, client, due=date(2027, 1, 2))  # not due yet
    await add_invoice(sessionmaker, client, status="paid")  # not open

    clock.now = FIRE_TIME - timedelta(seconds=1)
    assert billing.latest_fire_time(worker.settings.billing_schedule, clock.now) < FIRE_TIME
    clock.now = FIRE_TIME
    # Three workers see the run due at the same moment: exactly one starts it.
    workers = [replace(worker, worker_id=f"w{n}") for n in range(3)]
    started = await asyncio.gather(*(billing.start_due_run(w) for w in workers))
    assert sum(run is not None for run in started) == 1
    clock.now = FIRE_TIME + timedelta(days=2)
    assert await billing.start_due_run(worker) is None

    async with sessionmaker() as session:
        runs = (await session.scalars(select(BillingRun))).all()
        items = (await session.scalars(select(BillingRunItem))).all()
    assert [run.scheduled_for for run in runs] == [FIRE_TIME]
    assert [item.invoice_id for item in items] == [due]


async def test_a_run_missed_on_the_first_starts_when_a_worker_comes_back(
    worker: billing.Billing, clock: Clock, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock.now = FIRE_TIME + timedelta(days=3, hours=5)
    run = await billing.start_due_run(worker)
    assert run is not None
    assert run.scheduled_for == FIRE_TIME
    assert run.as_of == FIRE_TIME.date()
    assert await billing.start_due_run(worker) is None


# --- outcomes ---------------------------------------------------------------------------------


async def test_each_provider_outcome_leads_where_it_should(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    fakepay: FakePayControl,
) -> None:
    paid = await add_invoice(sessionmaker, await add_client(api, test_issuer, owner, GOOD_CARD))
    declined = await add_invoice(
        sessionmaker, await add_client(api, test_issuer, owner, DECLINED_CARD)
    )
    outage = await add_invoice(sessionmaker, await add_client(api, test_issuer, owner, ERROR_CARD))
    mismatch = await add_invoice(
        sessionmaker, await add_client(api, test_issuer, owner, MISMATCH_CARD), currency="EUR"
    )
    no_method = await add_invoice(sessionmaker, await add_client(api, test_issuer, owner, None))
    gone_client = await add_client(api, test_issuer, owner, GOOD_CARD)
    gone = await add_invoice(sessionmaker, gone_client)
    weird_client = await add_client(api, test_issuer, owner, "4000 0000 0000 7777")
    weird = await add_invoice(sessionmaker, weird_client)
    async with sessionmaker() as session:
        token = await session.scalar(
            select(PaymentMethod.provider_token).where(
                PaymentMethod.client_id == gone_client.client_id
            )
        )
    # The provider lost the customer: its vault no longer has the card.
    async with httpx.AsyncClient() as http:
        await http.delete(f"{worker.settings.fakepay_url}/payment-methods/{token}")
    fakepay.fault("reject", card_last4="7777", code="processing_error")
    outcomes = ("paid", "retry_scheduled", "provider_unavailable", "failed")
    charges_before = {name: metric("billing_run_charges_total", outcome=name) for name in outcomes}
    provider = {"provider": "fakepay", "operation": "charge_saved"}
    succeeded_before = metric("provider_requests_total", **provider, outcome="succeeded")

    run = await billing.start_due_run(worker)
    assert run is not None
    await billing.charge_due_items(worker)
    charged = {
        name: metric("billing_run_charges_total", outcome=name) - charges_before[name]
        for name in outcomes
    }

    async def outcome(invoice_id: uuid.UUID) -> tuple[str | None, str | None, str]:
        item = await item_of(sessionmaker, invoice_id)
        return item.outcome, item.failure_code, item.state

    assert await outcome(paid) == (ItemOutcome.PAID, None, ItemState.DONE)
    assert charges_for(fakepay, paid) == 1
    [(kind, data)] = await events_of(sessionmaker, paid)
    assert (kind, data["kind"]) == (
        "payment.succeeded",
        "autopay",
    )
    # Whom the receipt goes to, from the copy of the invoice.
    assert (data["client_email"], data["client_name"], data["invoice_number"]) == (
        "billing@acme.test",
        "Acme Ltd",
        "INV-000042",
    )

    assert await outcome(declined) == (
        ItemOutcome.RETRY_SCHEDULED,
        "insufficient_funds",
        ItemState.QUEUED,
    )
    [(kind, data)] = await events_of(sessionmaker, declined)
    assert kind == "payment.failed"
    assert data["final"] is False
    assert data["client_email"] == "billing@acme.test"
    assert data["failure_code"] == "insufficient_funds"
    assert data["next_attempt_at"] == "2027-01-02T10:01:00Z"  # one day after the attempt

    assert await outcome(outage) == (ItemOutcome.PROVIDER_UNAVAILABLE, None, ItemState.QUEUED)
    assert await events_of(sessionmaker, outage) == []  # nobody is told of our network trouble

    for invoice_id, code in (
        (mismatch, "currency_mismatch"),
        (gone, "customer_not_found"),
        (weird, "processing_error"),
    ):
        assert await outcome(invoice_id) == (ItemOutcome.FAILED, code, ItemState.DONE)
        [(kind, data)] = await events_of(sessionmaker, invoice_id)
        assert (kind, data["final"], data["failure_code"]) == ("payment.failed", True, code)
        assert charges_for(fakepay, invoice_id) == 0

    assert await outcome(no_method) == (ItemOutcome.NO_PAYMENT_METHOD, None, ItemState.DONE)

    owner_view = await api.get(f"/api/billing-runs/{run.id}", headers=test_issuer.headers(owner))
    assert owner_view.status_code == 200
    report = owner_view.json()
    assert report["counts"] == {
        "paid": 1,
        "retry_scheduled": 1,
        "provider_unavailable": 1,
        "failed": 3,
        "no_payment_method": 1,
    }
    assert report["status"] == "charging"
    # The metrics count the same outcomes, and show the run charging since it started.
    assert charged == {"paid": 1, "retry_scheduled": 1, "provider_unavailable": 1, "failed": 3}
    succeeded = metric("provider_requests_total", **provider, outcome="succeeded")
    assert succeeded - succeeded_before == 1
    assert metric("billing_run_running") == 1
    assert (
        metric("billing_run_started_timestamp_seconds")
        == run.started_at.replace(tzinfo=UTC).timestamp()
    )
    stranger = await api.get(
        f"/api/billing-runs/{run.id}", headers=test_issuer.headers(uuid.uuid4())
    )
    assert stranger.json()["items"] == []
    assert stranger.json()["counts"] == {}


async def test_a_decline_is_retried_after_one_three_and_seven_days_then_fails(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    clock: Clock,
    fakepay: FakePayControl,
) -> None:
    invoice = await add_invoice(
        sessionmaker, await add_client(api, test_issuer, owner, DECLINED_CARD)
    )
    await billing.start_due_run(worker)
    started = clock.now
    tried_at = []
    for _ in range(6):
        await billing.charge_due_items(worker)
        item = await item_of(sessionmaker, invoice)
        tried_at.append(item.attempts)
        clock.now += timedelta(days=1)
    item = await item_of(sessionmaker, invoice)
    assert item.attempts == 3  # by day 6: the first try and the retries of days 1 and 3
    assert tried_at == [1, 2, 2, 3, 3, 3]
    clock.now = started + timedelta(days=7)
    await billing.charge_due_items(worker)
    item = await item_of(sessionmaker, invoice)
    assert (item.attempts, item.state, item.outcome) == (4, ItemState.DONE, ItemOutcome.FAILED)
    failures = [data for kind, data in await events_of(sessionmaker, invoice)]
    assert [data["final"] for data in failures] == [False, False, False, True]
    async with sessionmaker() as session:
        run = await session.scalar(select(BillingRun))
    assert run is not None
    assert run.status == RunStatus.FINISHED
    assert run.finished_at is not None
    assert metric("billing_run_running") == 0
    assert (
        metric("billing_run_last_finished_timestamp_seconds")
        == run.finished_at.replace(tzinfo=UTC).timestamp()
    )


# --- exactly once -----------------------------------------------------------------------------


async def test_an_attempt_charged_before_a_crash_is_found_not_charged_again(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    clock: Clock,
    fakepay: FakePayControl,
) -> None:
    invoice = await add_invoice(sessionmaker, await add_client(api, test_issuer, owner, GOOD_CARD))
    await billing.start_due_run(worker)
    # A worker claims the item, commits its attempt, the provider charges, and the worker
    # dies before it writes the outcome.
    claim, [item_id] = await billing._claim_batch(worker, 10)
    [attempt] = await billing._prepare_attempts(worker, [item_id], claim)
    await worker.provider.charge_saved(attempt.charge)
    assert charges_for(fakepay, invoice) == 1

    other = replace(worker, worker_id="second")
    assert await billing.charge_due_items(other) == 0  # the claim is still live
    clock.now += timedelta(seconds=worker.settings.billing_claim_seconds + 1)
    assert await billing.charge_due_items(other) == 1

    item = await item_of(sessionmaker, invoice)
    assert (item.outcome, item.attempts) == (ItemOutcome.PAID, 1)
    assert charges_for(fakepay, invoice) == 1
    async with sessionmaker() as session:
        payment = await session.get(Payment, attempt.payment_id)
    assert payment is not None
    assert payment.status == PaymentStatus.SUCCEEDED


async def test_an_attempt_never_sent_before_a_crash_is_sent_once_with_its_own_key(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    clock: Clock,
    fakepay: FakePayControl,
) -> None:
    invoice = await add_invoice(sessionmaker, await add_client(api, test_issuer, owner, GOOD_CARD))
    await billing.start_due_run(worker)
    claim, [item_id] = await billing._claim_batch(worker, 10)
    [attempt] = await billing._prepare_attempts(worker, [item_id], claim)
    clock.now += timedelta(seconds=worker.settings.billing_claim_seconds + 1)
    await billing.charge_due_items(replace(worker, worker_id="second"))

    [entry] = [e for e in fakepay.ledger() if e.reference == str(invoice)]
    assert entry.transaction_id == str(attempt.payment_id)
    async with sessionmaker() as session:
        attempts = await session.scalar(
            select(func.count()).select_from(Payment).where(Payment.invoice_id == invoice)
        )
    assert attempts == 1


async def test_an_unknown_outcome_is_asked_about_before_any_retry(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    fakepay: FakePayControl,
) -> None:
    invoice = await add_invoice(
        sessionmaker, await add_client(api, test_issuer, owner, "4000 0000 0000 5555")
    )
    # The provider takes the charge and answers after our timeout: the outcome is unknown.
    fakepay.fault("accept_then_hang", card_last4="5555", delay=3, times=1)
    await billing.start_due_run(worker)
    await billing.charge_due_items(worker)
    item = await item_of(sessionmaker, invoice)
    assert item.outcome == ItemOutcome.PAID
    assert charges_for(fakepay, invoice) == 1


async def test_two_workers_share_a_run_and_charge_each_invoice_once(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    fakepay: FakePayControl,
) -> None:
    client = await add_client(api, test_issuer, owner, GOOD_CARD)
    invoices = [await add_invoice(sessionmaker, client) for _ in range(40)]
    await billing.start_due_run(worker)
    settings = worker.settings.model_copy(update={"billing_concurrency": 2})
    first = replace(worker, worker_id="one", settings=settings)
    second = replace(worker, worker_id="two", settings=settings)
    counts = await asyncio.gather(billing.charge_due_items(first), billing.charge_due_items(second))
    assert sum(counts) == 40
    assert all(counts)  # both took a share
    references = [e.reference for e in fakepay.ledger()]
    assert all(references.count(str(invoice)) == 1 for invoice in invoices)
    async with sessionmaker() as session:
        run = await session.scalar(select(BillingRun))
    assert run is not None
    assert run.status == RunStatus.FINISHED


async def test_an_invoice_paid_by_card_meanwhile_is_not_charged(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    fakepay: FakePayControl,
) -> None:
    client = await add_client(api, test_issuer, owner, GOOD_CARD)
    invoice = await add_invoice(sessionmaker, client)
    await billing.start_due_run(worker)
    paid = await api.post(
        "/internal/invoice-payments",
        json={
            "invoice_id": str(invoice),
            "amount": "120.00",
            "currency": "USD",
            "description": "Consulting",
            "card": {"number": GOOD_CARD, "expiry": "01-2040", "name": "J Doe"},
        },
        headers=client.headers,
    )
    assert paid.status_code in (200, 201), paid.text
    await billing.charge_due_items(worker)
    item = await item_of(sessionmaker, invoice)
    assert item.outcome == ItemOutcome.ALREADY_PAID
    assert charges_for(fakepay, invoice) == 0  # the card payment is not a vault charge


async def test_runs_are_listed_newest_first_with_cursor_pages(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    clock: Clock,
) -> None:
    client = await add_client(api, test_issuer, owner, GOOD_CARD)
    for month in range(3):
        await add_invoice(sessionmaker, client, due=date(2027, 1 + month, 1))
        clock.now = datetime(2027, 1 + month, 1, 11, 0)
        await billing.start_due_run(worker)
        await billing.charge_due_items(worker)
    first = await api.get("/api/billing-runs", params={"limit": 2}, headers=client.headers)
    body = first.json()
    assert [run["scheduled_for"][:7] for run in body["items"]] == ["2027-03", "2027-02"]
    # Nothing told the copy that the earlier invoices were paid (no invoice service here):
    # the later runs find their succeeded payments and charge nothing again.
    assert body["items"][0]["counts"] == {"paid": 1, "already_paid": 2}
    rest = await api.get(
        "/api/billing-runs", params={"cursor": body["next_cursor"]}, headers=client.headers
    )
    [january] = rest.json()["items"]
    assert january["scheduled_for"][:7] == "2027-01"
    detail = await api.get(
        f"/api/billing-runs/{january['id']}", params={"limit": 1}, headers=client.headers
    )
    [item] = detail.json()["items"]
    assert (item["outcome"], item["final"]) == ("paid", True)
    assert (
        await api.get(f"/api/billing-runs/{uuid.uuid4()}", headers=client.headers)
    ).status_code == 404


async def test_a_status_change_updates_the_copy_of_the_invoice(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID, clean_billing: None
) -> None:
    client = Client(owner, next(_next_client), {})
    invoice = await add_invoice(sessionmaker, client)
    event = CloudEvent(
        source="/services/invoice",
        type="invoice.status_changed",
        subject=str(owner),
        data={
            "invoice_id": str(invoice),
            "client_id": client.client_id,
            "previous_status": "pending",
            "status": "void",
            "amount": "120.00",
            "currency": "USD",
            "due_date": "2026-12-31",
        },
    )
    async with sessionmaker() as session, session.begin():
        await consumers.on_invoice_status_changed(session, event)
    async with sessionmaker() as session:
        copy = await session.get(InvoiceCopy, invoice)
    assert copy is not None
    assert copy.status == "void"
    assert copy.client_email == "billing@acme.test"  # kept from invoice.created


# --- the command ------------------------------------------------------------------------------


async def test_the_command_starts_the_run_charges_and_prints_the_report(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: PaymentSettings,
    clean_billing: None,
    fakepay: FakePayControl,
) -> None:
    paid = await add_invoice(
        sessionmaker, await add_client(api, test_issuer, owner, GOOD_CARD), due=date(2027, 2, 1)
    )
    failed = await add_invoice(
        sessionmaker,
        await add_client(api, test_issuer, owner, MISMATCH_CARD),
        due=date(2027, 2, 1),
    )
    env = {
        **os.environ,
        "PAYMENT_DATABASE_URL": settings.database_url.get_secret_value(),
        "PAYMENT_FAKEPAY_URL": settings.fakepay_url,
    }
    command = [sys.executable, "-m", "payment.cli", "billing-run", "--as-of", "2027-02-03"]

    async def run(*extra: str) -> str:
        process = await asyncio.create_subprocess_exec(
            *command, *extra, env=env, stdout=PIPE, stderr=STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, output.decode()
        return output.decode()

    preview = await run("--dry-run")
    assert "USD" in preview
    assert "240.00" in preview
    assert charges_for(fakepay, paid) == 0

    report = await run()
    assert "2027-02-01 10:00 UTC" in report
    assert "charged 2 of 2" in report  # not a terminal: plain lines
    assert "currency_mismatch" in report
    assert str(failed) in report
    assert charges_for(fakepay, paid) == 1
    assert (await item_of(sessionmaker, paid)).outcome == ItemOutcome.PAID

    again = await run()  # resumes the same run: nothing left to charge
    assert "charged" not in again
    assert charges_for(fakepay, paid) == 1


async def test_the_command_waits_out_a_database_outage_and_finishes_the_run(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: PaymentSettings,
    clean_billing: None,
    fakepay: FakePayControl,
) -> None:
    """The drill's load run saw the command end with a traceback when its database connection
    was reset; an operator's run should wait for the database and go on, charging once."""
    invoice = await add_invoice(
        sessionmaker, await add_client(api, test_issuer, owner, GOOD_CARD), due=date(2027, 3, 1)
    )
    database = make_url(settings.database_url.get_secret_value())
    async with FaultProxy(database.host or "127.0.0.1", database.port or 3306) as proxy:
        await proxy.down()
        through_proxy = database.set(host="127.0.0.1", port=proxy.port)
        env = {
            **os.environ,
            "PAYMENT_DATABASE_URL": through_proxy.render_as_string(hide_password=False),
            "PAYMENT_FAKEPAY_URL": settings.fakepay_url,
        }
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "payment.cli", "billing-run", "--as-of", "2027-03-03"),
            env=env,
            stdout=PIPE,
            stderr=STDOUT,
        )
        assert process.stdout is not None
        said: list[str] = []
        async with asyncio.timeout(60):
            while not any("database is unavailable" in line for line in said):
                line = await process.stdout.readline()
                assert line, "the command ended:\n" + "".join(said)
                said.append(line.decode())
        assert charges_for(fakepay, invoice) == 0

        await proxy.up()
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)

    assert process.returncode == 0, "".join(said) + output.decode()
    assert "charged 1 of 1" in output.decode()
    assert charges_for(fakepay, invoice) == 1


async def test_sending_an_attempt_again_never_charges_twice(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    fakepay: FakePayControl,
) -> None:
    invoice = await add_invoice(sessionmaker, await add_client(api, test_issuer, owner, GOOD_CARD))
    await billing.start_due_run(worker)
    claim, [item_id] = await billing._claim_batch(worker, 10)
    [attempt] = await billing._prepare_attempts(worker, [item_id], claim)
    # The same request twice, as after a lost answer: the attempt's key makes it one charge.
    first = await worker.provider.charge_saved(attempt.charge)
    second = await worker.provider.charge_saved(attempt.charge)
    assert first == second
    assert charges_for(fakepay, invoice) == 1


async def test_a_lost_attempt_of_an_invoice_voided_meanwhile_is_not_sent_again(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    worker: billing.Billing,
    clock: Clock,
    fakepay: FakePayControl,
) -> None:
    client = await add_client(api, test_issuer, owner, GOOD_CARD)
    invoice = await add_invoice(sessionmaker, client)
    await billing.start_due_run(worker)
    claim, [item_id] = await billing._claim_batch(worker, 10)
    [attempt] = await billing._prepare_attempts(worker, [item_id], claim)
    # The worker dies before sending; the owner voids the invoice meanwhile.
    void = CloudEvent(
        source="/services/invoice",
        type="invoice.status_changed",
        subject=str(owner),
        data={
            "invoice_id": str(invoice),
            "client_id": client.client_id,
            "previous_status": "pending",
            "status": "void",
            "amount": "120.00",
            "currency": "USD",
            "due_date": "2026-12-31",
        },
    )
    async with sessionmaker() as session, session.begin():
        await consumers.on_invoice_status_changed(session, void)
    clock.now += timedelta(seconds=worker.settings.billing_claim_seconds + 1)
    await billing.charge_due_items(replace(worker, worker_id="second"))

    item = await item_of(sessionmaker, invoice)
    assert (item.outcome, item.failure_code) == (ItemOutcome.SKIPPED, "invoice_closed")
    assert charges_for(fakepay, invoice) == 0
    async with sessionmaker() as session:
        payment = await session.get(Payment, attempt.payment_id)
    assert payment is not None
    assert (payment.status, payment.active_invoice_id) == (PaymentStatus.FAILED, None)
