"""Paying an invoice by card through the internal API: one charge at most, whatever fails.

FakePay runs as a real process; its ledger is the proof of what was charged.
"""

import asyncio
import uuid
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment.exceptions import CardRejected
from payment.models import PaymentStatus
from payment.providers import CardDetails
from payment.service import Charging, InvoiceCharge
from payment.service import pay_invoice as pay_invoice_now
from simulators.testing import FakePayControl

from .factories import (
    DECLINED_CARD,
    MASKED_SEED_CARD,
    SEED_CARD,
    SEED_CARD_SPACED,
    age_payments,
    card,
    pay_invoice,
    payment_row,
    payments_of_invoice,
    staged_events,
    top_up,
)


async def test_a_paid_invoice_answers_201_with_the_card_masked(
    api: httpx.AsyncClient, auth: dict[str, str], owner: uuid.UUID, fakepay: FakePayControl
) -> None:
    invoice_id = str(uuid.uuid4())

    response = await pay_invoice(
        api, auth, invoice_id=invoice_id, card=card(number=SEED_CARD_SPACED, name="Work Card")
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["invoice_id"] == invoice_id
    assert body["kind"] == "invoice"
    assert body["amount"] == "99.99"
    assert body["card"] == {"number": MASKED_SEED_CARD, "expiry": "01-2040", "name": "Work Card"}
    charges = fakepay.ledger(invoice_id)
    assert len(charges) == 1  # seed 001: the transactionId is the invoice id
    assert str(charges[0].amount) == "99.99"
    assert charges[0].currency == "USD"


async def test_the_payment_reads_back_as_it_was_answered(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    paid = (await pay_invoice(api, auth)).json()

    read = await api.get(f"/api/payments/{paid['id']}", headers=auth)

    assert read.status_code == 200
    assert read.json() == paid


async def test_success_stages_payment_succeeded_with_the_contract_data(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    paid = (await pay_invoice(api, auth, amount="120.50", currency="EUR")).json()

    [event] = await staged_events(sessionmaker, paid["id"])

    assert event.type == "payment.succeeded"
    assert event.source == "/services/payment"
    assert event.subject == str(owner)
    assert event.data == {
        "payment_id": paid["id"],
        "invoice_id": paid["invoice_id"],
        "owner_id": str(owner),
        "amount": "120.50",
        "currency": "EUR",
        "kind": "invoice",
        "card_last4": "5678",
        "occurred_at": paid["updated_at"],
        # Not sent with this request: the email service sends no receipt then.
        "client_email": None,
        "client_name": None,
        "invoice_number": None,
    }


async def test_payment_succeeded_names_the_client_and_invoice_the_request_names(
    api: httpx.AsyncClient, auth: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    paid = await pay_invoice(
        api,
        auth,
        client_email="payer@example.com",
        client_name="Payer Inc",
        invoice_number="INV-000012",
    )
    assert paid.status_code == 201, paid.text
    assert "client_email" not in paid.json()  # the answer stays as it was

    [event] = await staged_events(sessionmaker, paid.json()["id"])
    assert event.data["kind"] == "invoice"
    assert event.data["client_email"] == "payer@example.com"
    assert event.data["client_name"] == "Payer Inc"
    assert event.data["invoice_number"] == "INV-000012"


async def test_an_outcome_settled_later_still_names_the_client(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    """The request that knew the client timed out; the event comes from settling the stored
    attempt, in a later request that carries nothing for the receipt."""
    invoice_id = str(uuid.uuid4())
    fakepay.fault("accept_then_hang", transaction_id=invoice_id, delay=5, times=1)

    timed_out = await pay_invoice(
        api,
        auth,
        invoice_id=invoice_id,
        client_email="payer@example.com",
        client_name="Payer Inc",
        invoice_number="INV-000013",
    )
    settled = await pay_invoice(api, auth, invoice_id=invoice_id)

    assert timed_out.status_code == 503
    assert settled.status_code == 200, settled.text
    [event] = await staged_events(sessionmaker, settled.json()["id"])
    assert event.type == "payment.succeeded"
    assert event.data["client_email"] == "payer@example.com"
    assert event.data["invoice_number"] == "INV-000013"


async def test_a_top_up_names_no_client(
    api: httpx.AsyncClient, auth: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    topped = await top_up(api, auth)
    assert topped.status_code == 201, topped.text

    [event] = [
        e
        for e in await staged_events(sessionmaker, topped.json()["payment"]["id"])
        if e.type == "payment.succeeded"
    ]
    assert event.data["kind"] == "topup"
    assert event.data["invoice_id"] is None
    assert event.data["client_email"] is None
    assert event.data["invoice_number"] is None


async def test_an_invoice_paid_already_answers_200_with_that_payment_and_charges_nothing(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    invoice_id = str(uuid.uuid4())
    first = await pay_invoice(api, auth, invoice_id=invoice_id)

    again = await pay_invoice(api, auth, invoice_id=invoice_id, card=card(name="Other"))

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(fakepay.ledger(invoice_id)) == 1


async def test_a_declined_card_is_402_and_the_invoice_can_be_paid_after(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    invoice_id = str(uuid.uuid4())

    declined = await pay_invoice(api, auth, invoice_id=invoice_id, card=card(number=DECLINED_CARD))
    paid = await pay_invoice(api, auth, invoice_id=invoice_id)

    assert declined.status_code == 402
    assert declined.headers["content-type"] == "application/problem+json"
    problem = declined.json()
    assert problem["code"] == "insufficient_funds"
    failed = await payment_row(sessionmaker, problem["payment_id"])
    assert (failed.status, failed.active_invoice_id) == (PaymentStatus.FAILED, None)
    [event] = await staged_events(sessionmaker, problem["payment_id"])
    assert event.type == "payment.failed"
    assert event.data["failure_code"] == "insufficient_funds"
    assert event.data["card_last4"] == "0002"
    assert paid.status_code == 201
    assert len(fakepay.ledger(invoice_id)) == 1


async def test_a_card_the_provider_refuses_is_422_naming_the_field_and_frees_the_invoice(
    charging: Charging,
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    # The API refuses an expired card itself; called below the API, FakePay refuses it (400).
    invoice_id = uuid.uuid4()
    expired = CardDetails(SecretStr(SEED_CARD), "01-2020", "J Doe")
    charge = InvoiceCharge(invoice_id, Decimal("10.00"), "USD", "Work", expired)

    with pytest.raises(CardRejected) as refused:
        await pay_invoice_now(charging, owner, charge)

    assert refused.value.status == 422
    assert refused.value.field == "card.expiry"
    assert refused.value.extensions["code"] == "expired_card"
    [attempt] = await payments_of_invoice(sessionmaker, str(invoice_id))
    assert (attempt.status, attempt.active_invoice_id) == (PaymentStatus.FAILED, None)
    assert fakepay.ledger(str(invoice_id)) == []


async def test_a_provider_error_is_503_with_retry_after_and_charges_nothing(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    invoice_id = str(uuid.uuid4())
    fakepay.fault("error", transaction_id=invoice_id)

    response = await pay_invoice(api, auth, invoice_id=invoice_id)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.headers["content-type"] == "application/problem+json"
    assert fakepay.ledger(invoice_id) == []
    # A 5xx proves nothing: the attempt waits to be settled with the provider.
    [attempt] = await payments_of_invoice(sessionmaker, invoice_id)
    assert attempt.status == PaymentStatus.UNKNOWN
    assert await staged_events(sessionmaker, str(attempt.id)) == []


async def test_after_a_provider_error_the_invoice_is_charged_once_when_the_attempt_settles(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    invoice_id = str(uuid.uuid4())
    fakepay.fault("error", transaction_id=invoice_id, times=1)
    await pay_invoice(api, auth, invoice_id=invoice_id)

    # The provider has no charge, but the attempt is too young to be called uncharged.
    too_soon = await pay_invoice(api, auth, invoice_id=invoice_id)
    await age_payments(sessionmaker, invoice_id, 60)
    paid = await pay_invoice(api, auth, invoice_id=invoice_id)

    assert too_soon.status_code == 409
    assert int(too_soon.headers["retry-after"]) >= 1
    assert paid.status_code == 201, paid.text
    first, second = await payments_of_invoice(sessionmaker, invoice_id)
    assert (first.status, first.failure_code) == (PaymentStatus.FAILED, "not_charged")
    assert second.status == PaymentStatus.SUCCEEDED
    assert len(fakepay.ledger(invoice_id)) == 1


async def test_a_timeout_after_the_provider_accepted_is_settled_before_the_next_attempt(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    invoice_id = str(uuid.uuid4())
    # FakePay takes the money, then holds its answer past our one-second timeout.
    fakepay.fault("accept_then_hang", transaction_id=invoice_id, delay=5, times=1)

    timed_out = await pay_invoice(api, auth, invoice_id=invoice_id)
    retried = await pay_invoice(api, auth, invoice_id=invoice_id)

    assert timed_out.status_code == 503
    assert "retry-after" in timed_out.headers
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "succeeded"
    assert retried.json()["id"] == timed_out.json()["payment_id"]
    assert len(fakepay.ledger(invoice_id)) == 1
    [event] = await staged_events(sessionmaker, retried.json()["id"])
    assert event.type == "payment.succeeded"


async def test_an_unreachable_provider_is_503_and_frees_the_invoice_at_once(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    app: object,
    fakepay: FakePayControl,
) -> None:
    invoice_id = str(uuid.uuid4())
    # The FakePay adapter inside the counting wrapper (payment.providers.CountedProvider).
    provider = app.state.provider.inner  # type: ignore[attr-defined]
    reachable = provider.url
    provider.url = "http://127.0.0.1:9/fakepay"  # nothing listens on the discard port
    try:
        response = await pay_invoice(api, auth, invoice_id=invoice_id)
    finally:
        provider.url = reachable
    paid = await pay_invoice(api, auth, invoice_id=invoice_id)

    assert response.status_code == 503
    # Never connected, so never charged: the attempt fails at once and frees the invoice.
    failed, succeeded = await payments_of_invoice(sessionmaker, invoice_id)
    assert (failed.status, failed.failure_code) == (PaymentStatus.FAILED, "provider_unavailable")
    assert paid.status_code == 201
    assert succeeded.status == PaymentStatus.SUCCEEDED


async def test_a_payment_in_flight_makes_a_second_attempt_409(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    invoice_id = str(uuid.uuid4())
    fakepay.fault("slow", transaction_id=invoice_id, delay=0.5)

    first = asyncio.create_task(pay_invoice(api, auth, invoice_id=invoice_id))
    await asyncio.sleep(0.2)
    second = await pay_invoice(api, auth, invoice_id=invoice_id)

    assert second.status_code == 409
    assert second.json()["code"] == "payment_in_progress"
    assert (await first).status_code == 201
    assert len(fakepay.ledger(invoice_id)) == 1


async def test_ten_concurrent_payments_of_one_invoice_charge_it_once(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    invoice_id = str(uuid.uuid4())
    # A slow provider keeps the first charge in flight while the others arrive.
    fakepay.fault("slow", transaction_id=invoice_id, delay=0.5)

    responses = await asyncio.gather(
        *(pay_invoice(api, auth, invoice_id=invoice_id) for _ in range(10))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses]
    assert len(fakepay.ledger(invoice_id)) == 1


async def test_another_owners_invoice_id_is_not_paid_again(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    test_issuer: object,
    fakepay: FakePayControl,
) -> None:
    invoice_id = str(uuid.uuid4())
    await pay_invoice(api, auth, invoice_id=invoice_id)
    stranger = test_issuer.headers(uuid.uuid4())  # type: ignore[attr-defined]

    response = await pay_invoice(api, stranger, invoice_id=invoice_id)

    assert response.status_code == 409
    assert "card" not in response.json()
    assert len(fakepay.ledger(invoice_id)) == 1
