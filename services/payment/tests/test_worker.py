"""The worker's reconcile schedule: attempts whose outcome was lost are settled with the
provider. Found there: succeeded, with its event. Not found once the attempt is past the
provider timeout and the grace period: failed, and the invoice is free again."""

import dataclasses
import uuid
from decimal import Decimal

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment.config import PaymentSettings
from payment.models import PaymentStatus
from payment.providers import CardDetails, ChargeRequest, FakePayProvider, Outcome
from payment.service import Charging, reconcile_unsettled
from payment.worker import reconcile_schedule
from simulators.testing import FakePayControl

from .factories import (
    SEED_CARD,
    age_payments,
    insert_attempt,
    pay_invoice,
    payment_row,
    staged_events,
)


async def test_a_charge_accepted_after_our_timeout_is_found_and_marked_succeeded(
    api: object,
    auth: dict[str, str],
    charging: Charging,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    invoice_id = str(uuid.uuid4())
    fakepay.fault("accept_then_hang", transaction_id=invoice_id, delay=5, times=1)
    timed_out = await pay_invoice(api, auth, invoice_id=invoice_id)  # type: ignore[arg-type]
    payment_id = timed_out.json()["payment_id"]
    await age_payments(sessionmaker, invoice_id, 60)

    await reconcile_unsettled(charging)

    payment = await payment_row(sessionmaker, payment_id)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.provider_charge_id == fakepay.ledger(invoice_id)[0].charge_id
    [event] = await staged_events(sessionmaker, payment_id)
    assert event.type == "payment.succeeded"
    assert len(fakepay.ledger(invoice_id)) == 1


async def test_an_attempt_of_a_process_killed_after_the_charge_becomes_succeeded(
    owner: uuid.UUID,
    charging: Charging,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    invoice_id = str(uuid.uuid4())
    attempt = await insert_attempt(sessionmaker, owner, invoice_id, age_seconds=60)
    card = CardDetails(SecretStr(SEED_CARD), "01-2040", "J Doe")
    charged = await charging.provider.charge(
        ChargeRequest(invoice_id, Decimal("42.00"), "USD", card)
    )
    assert charged.outcome == Outcome.SUCCEEDED

    settled = await reconcile_unsettled(charging)

    assert settled >= 1
    payment = await payment_row(sessionmaker, attempt.id)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.active_invoice_id == uuid.UUID(invoice_id)


async def test_an_attempt_the_provider_never_saw_fails_and_frees_the_invoice(
    owner: uuid.UUID,
    charging: Charging,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    invoice_id = str(uuid.uuid4())
    attempt = await insert_attempt(sessionmaker, owner, invoice_id, age_seconds=60)

    await reconcile_unsettled(charging)

    payment = await payment_row(sessionmaker, attempt.id)
    assert (payment.status, payment.failure_code) == (PaymentStatus.FAILED, "not_charged")
    assert payment.active_invoice_id is None
    [event] = await staged_events(sessionmaker, str(attempt.id))
    assert event.type == "payment.failed"
    assert event.data["failure_code"] == "not_charged"


async def test_an_attempt_within_the_grace_period_is_left_unsettled(
    owner: uuid.UUID,
    charging: Charging,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    # Older than the provider timeout (1 s) but well within timeout + grace: the provider
    # might still be finishing the request, so "not found" proves nothing yet. The grace is
    # widened here so a slow machine cannot age the attempt past it during the test.
    patient = dataclasses.replace(
        charging, settings=charging.settings.model_copy(update={"reconcile_grace_seconds": 30})
    )
    unknown = await insert_attempt(
        sessionmaker, owner, str(uuid.uuid4()), PaymentStatus.UNKNOWN, age_seconds=2
    )
    in_flight = await insert_attempt(sessionmaker, owner, str(uuid.uuid4()), age_seconds=0)

    await reconcile_unsettled(patient)

    assert (await payment_row(sessionmaker, unknown.id)).status == PaymentStatus.UNKNOWN
    assert (await payment_row(sessionmaker, in_flight.id)).status == PaymentStatus.PROCESSING


async def test_an_unreachable_provider_leaves_every_attempt_as_it_was(
    owner: uuid.UUID,
    settings: PaymentSettings,
    charging: Charging,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    attempt = await insert_attempt(sessionmaker, owner, str(uuid.uuid4()), age_seconds=60)
    async with httpx.AsyncClient() as http:
        down = FakePayProvider(
            http, "http://127.0.0.1:9/fakepay", timeout_seconds=1, connect_timeout_seconds=0.5
        )
        settled = await reconcile_unsettled(Charging(sessionmaker, down, settings))

    assert settled == 0
    assert (await payment_row(sessionmaker, attempt.id)).status == PaymentStatus.PROCESSING
    await reconcile_unsettled(charging)  # settled once the provider answers again
    assert (await payment_row(sessionmaker, attempt.id)).status == PaymentStatus.FAILED


async def test_the_worker_runs_the_reconcile_on_the_configured_period(
    owner: uuid.UUID,
    settings: PaymentSettings,
    charging: Charging,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    attempt = await insert_attempt(sessionmaker, owner, str(uuid.uuid4()), age_seconds=60)
    schedule = reconcile_schedule(settings, charging.provider)

    await schedule.job(sessionmaker)

    assert schedule.every_seconds == settings.reconcile_every_seconds
    assert (await payment_row(sessionmaker, attempt.id)).status == PaymentStatus.FAILED
