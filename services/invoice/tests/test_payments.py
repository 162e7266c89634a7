"""Seed 001's card payments, through the real payment service and FakePay (both processes).

`POST /invoice` with a card and `POST /invoice/pay/{id}` answer the seed's examples exactly;
every refusal (404, 409, 402, 422, 503) leaves the invoice as it was and charges nothing; ten
requests at once charge one card once; a payment whose answer was lost is not charged again;
and no table of the invoice service ever holds a card number.
"""

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine
from common.events import CloudEvent
from common.testing.identity import TestIssuer
from invoice.models import Invoice, OutboxMessage
from simulators.testing import FakePayControl

from .factories import create_client

# The seed's own cards. They fail the Luhn check, which FakePay (like the seed's) ignores.
SEED_CARD = {"number": "1234567812345678", "name": "J Doe", "expiry": "01-2040"}
WORK_CARD = {"number": "1234 5656 7822 5678", "expiry": "01-2040", "name": "Work Card"}
FULL_NUMBERS = ["1234567812345678", "1234 5656 7822 5678", "1234565678225678"]
# FakePay's test cards: these last four digits always decline, or always fail (503).
DECLINED_CARD = {"number": "4000 0000 0000 0002", "expiry": "01-2040", "name": "J Doe"}
FAILING_CARD = {"number": "4000 0000 0000 0119", "expiry": "01-2040", "name": "J Doe"}


async def seed_invoice(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    customer_id: int,
    *,
    description: str = "Building Payment System",
    amount: float = 299.99,
) -> dict[str, Any]:
    """A PENDING invoice made through seed 001's POST /invoice, without a card."""
    body = {"jobDescription": description, "amount": amount, "customerId": customer_id}
    response = await api.post("/invoice", json=body, headers=auth)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def invoice_state(
    sessionmaker: async_sessionmaker[AsyncSession], invoice_id: str
) -> tuple[str, int]:
    """The invoice's stored status and how many status changes of it were announced."""
    async with sessionmaker() as session:
        invoice = await session.get(Invoice, uuid.UUID(invoice_id))
        changes = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.payload.contains(invoice_id),
                OutboxMessage.payload.contains('"invoice.status_changed"'),
            )
        )
    assert invoice is not None
    return invoice.status, changes or 0


def charges(control: FakePayControl, invoice_id: str) -> int:
    """How many times FakePay charged for this invoice (its transaction id is the invoice's)."""
    return len(control.ledger(invoice_id))


async def test_an_invoice_created_with_the_seeds_card_is_paid_as_the_seed_shows(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    fakepay_control: FakePayControl,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(paying_api, auth, name="John Doe", email="john.doe@example.com")

    response = await paying_api.post(
        "/invoice",
        json={
            "jobDescription": "Software License Fee",
            "amount": 99.99,
            "customerId": client["id"],
            "card": SEED_CARD,
        },
        headers=auth,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    invoice_id = body["id"]
    assert uuid.UUID(invoice_id)
    assert body == {
        "id": invoice_id,
        "jobDescription": "Software License Fee",
        "customerId": client["id"],
        "amount": 99.99,
        "card": {"number": "123456********5678", "expiry": "01-2040", "name": "J Doe"},
        "customerName": "John Doe",
        "customerEmail": "john.doe@example.com",
        "invoiceStatus": "PAID",
    }
    assert list(body) == [
        "id",
        "jobDescription",
        "customerId",
        "amount",
        "card",
        "customerName",
        "customerEmail",
        "invoiceStatus",
    ]
    [charge] = fakepay_control.ledger(invoice_id)
    assert (charge.amount, charge.currency) == (Decimal("99.99"), "USD")
    # Read your writes: the invoice is PAID for every read at once.
    read = (await paying_api.get(f"/invoice/{invoice_id}", headers=auth)).json()
    listed = (await paying_api.get("/api/invoices", headers=auth)).json()["items"]
    assert read["invoiceStatus"] == "PAID"
    assert "card" not in read  # a card is shown by the request that paid, never stored
    assert [(i["id"], i["status"]) for i in listed] == [(invoice_id, "paid")]
    assert await invoice_state(sessionmaker, invoice_id) == ("paid", 1)


async def test_the_payment_names_the_client_and_the_invoice_for_the_receipt(
    paying_api: httpx.AsyncClient, auth: dict[str, str], payment_database: str
) -> None:
    """The payment service's `payment.succeeded` carries whom the email service sends the
    receipt to: the invoice service sends them with the charge."""
    client = await create_client(paying_api, auth, name="Ann Payer", email="ann@payer.example")
    invoice = await seed_invoice(paying_api, auth, client["id"])
    paid = await paying_api.post(f"/invoice/pay/{invoice['id']}", json=WORK_CARD, headers=auth)
    assert paid.status_code == 201, paid.text

    engine = create_engine(payment_database, pool_size=1)
    try:
        async with engine.connect() as connection:
            payloads = (
                await connection.execute(
                    text("SELECT payload FROM outbox_messages WHERE payload LIKE :invoice"),
                    {"invoice": f"%{invoice['id']}%"},
                )
            ).scalars()
            events = [CloudEvent.model_validate_json(p) for p in payloads]
    finally:
        await engine.dispose()
    [succeeded] = [e for e in events if e.type == "payment.succeeded"]
    assert succeeded.data["client_email"] == "ann@payer.example"
    assert succeeded.data["client_name"] == "Ann Payer"
    assert succeeded.data["invoice_number"].startswith("INV-")


async def test_a_pending_invoice_is_paid_with_the_seeds_work_card(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    fakepay_control: FakePayControl,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(
        paying_api, auth, name="Seth Hall", email="seth.hall@paymark.co.nz"
    )
    invoice = await seed_invoice(paying_api, auth, client["id"])
    assert invoice["invoiceStatus"] == "PENDING"

    response = await paying_api.post(f"/invoice/pay/{invoice['id']}", json=WORK_CARD, headers=auth)

    assert response.status_code == 201, response.text
    assert response.json() == {
        "id": invoice["id"],
        "jobDescription": "Building Payment System",
        "customerId": client["id"],
        "amount": 299.99,
        "card": {"number": "123456********5678", "expiry": "01-2040", "name": "Work Card"},
        "customerName": "Seth Hall",
        "customerEmail": "seth.hall@paymark.co.nz",
        "invoiceStatus": "PAID",
    }
    assert charges(fakepay_control, invoice["id"]) == 1
    read = await paying_api.get(f"/invoice/{invoice['id']}", headers=auth)
    assert read.json()["invoiceStatus"] == "PAID"
    status, changes = await invoice_state(sessionmaker, invoice["id"])
    assert (status, changes) == ("paid", 1)
    async with sessionmaker() as session:
        payload = await session.scalar(
            select(OutboxMessage.payload).where(
                OutboxMessage.payload.contains(invoice["id"]),
                OutboxMessage.payload.contains('"invoice.status_changed"'),
            )
        )
    assert payload is not None
    event = CloudEvent.model_validate_json(payload)
    assert (event.data["previous_status"], event.data["status"]) == ("pending", "paid")


async def test_a_past_due_invoice_can_be_paid(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(paying_api, auth)
    invoice = await seed_invoice(paying_api, auth, client["id"])
    async with sessionmaker() as session, session.begin():
        stored = await session.get(Invoice, uuid.UUID(invoice["id"]))
        assert stored is not None
        stored.status = "past_due"

    response = await paying_api.post(f"/invoice/pay/{invoice['id']}", json=WORK_CARD, headers=auth)

    assert response.status_code == 201, response.text
    assert response.json()["invoiceStatus"] == "PAID"


async def test_an_unknown_or_another_owners_invoice_is_not_found_and_nothing_is_charged(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    test_issuer: TestIssuer,
    fakepay_control: FakePayControl,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(paying_api, auth)
    invoice = await seed_invoice(paying_api, auth, client["id"])
    stranger = test_issuer.headers(uuid.uuid4())

    theirs = await paying_api.post(
        f"/invoice/pay/{invoice['id']}", json=WORK_CARD, headers=stranger
    )
    missing = await paying_api.post(f"/invoice/pay/{uuid.uuid4()}", json=WORK_CARD, headers=auth)

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    assert theirs.headers["content-type"] == "application/problem+json"
    assert invoice["id"] not in theirs.text
    assert await invoice_state(sessionmaker, invoice["id"]) == ("pending", 0)
    assert charges(fakepay_control, invoice["id"]) == 0


async def test_a_paid_or_cancelled_invoice_is_not_paid_again(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    fakepay_control: FakePayControl,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(paying_api, auth)
    paid = await seed_invoice(paying_api, auth, client["id"])
    voided = await seed_invoice(paying_api, auth, client["id"])
    await paying_api.post(f"/api/invoices/{voided['id']}/void", headers=auth)
    first = await paying_api.post(f"/invoice/pay/{paid['id']}", json=WORK_CARD, headers=auth)

    again = await paying_api.post(f"/invoice/pay/{paid['id']}", json=SEED_CARD, headers=auth)
    cancelled = await paying_api.post(f"/invoice/pay/{voided['id']}", json=SEED_CARD, headers=auth)

    assert first.status_code == 201
    assert again.status_code == cancelled.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert "paid" in again.json()["detail"]
    assert charges(fakepay_control, paid["id"]) == 1
    assert charges(fakepay_control, voided["id"]) == 0
    assert await invoice_state(sessionmaker, paid["id"]) == ("paid", 1)
    assert (await invoice_state(sessionmaker, voided["id"]))[0] == "void"


async def test_a_declined_card_leaves_the_invoice_pending_to_pay_again(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    fakepay_control: FakePayControl,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(paying_api, auth)

    created = await paying_api.post(
        "/invoice",
        json={
            "jobDescription": "Work",
            "amount": 10,
            "customerId": client["id"],
            "card": DECLINED_CARD,
        },
        headers=auth,
    )

    assert created.status_code == 402, created.text
    problem = created.json()
    assert created.headers["content-type"] == "application/problem+json"
    assert problem["status"] == 402
    assert problem["title"] == "Payment declined"
    invoice_id = problem["invoice_id"]
    assert await invoice_state(sessionmaker, invoice_id) == ("pending", 0)
    listed = (await paying_api.get("/invoices", headers=auth)).json()
    assert [(i["id"], i["invoiceStatus"]) for i in listed] == [(invoice_id, "PENDING")]

    declined = await paying_api.post(f"/invoice/pay/{invoice_id}", json=DECLINED_CARD, headers=auth)
    paid = await paying_api.post(f"/invoice/pay/{invoice_id}", json=WORK_CARD, headers=auth)

    assert declined.status_code == 402
    assert declined.json()["invoice_id"] == invoice_id
    assert paid.status_code == 201, paid.text
    assert await invoice_state(sessionmaker, invoice_id) == ("paid", 1)
    assert charges(fakepay_control, invoice_id) == 1


async def test_a_failing_provider_is_a_503_to_retry_and_the_invoice_stays_pending(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    fakepay_control: FakePayControl,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(paying_api, auth)
    invoice = await seed_invoice(paying_api, auth, client["id"])

    response = await paying_api.post(
        f"/invoice/pay/{invoice['id']}", json=FAILING_CARD, headers=auth
    )

    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["invoice_id"] == invoice["id"]
    assert await invoice_state(sessionmaker, invoice["id"]) == ("pending", 0)
    assert charges(fakepay_control, invoice["id"]) == 0


async def test_the_payment_service_down_is_a_503_to_retry(
    api: httpx.AsyncClient, auth: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """`api` is wired to a payment service address where nothing listens."""
    client = await create_client(api, auth)
    invoice = await seed_invoice(api, auth, client["id"])

    paying = await api.post(f"/invoice/pay/{invoice['id']}", json=WORK_CARD, headers=auth)
    creating = await api.post(
        "/invoice",
        json={
            "jobDescription": "Work",
            "amount": 10,
            "customerId": client["id"],
            "card": SEED_CARD,
        },
        headers=auth,
    )

    for response in (paying, creating):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert response.headers["content-type"] == "application/problem+json"
    assert await invoice_state(sessionmaker, invoice["id"]) == ("pending", 0)
    created_id = creating.json()["invoice_id"]
    assert await invoice_state(sessionmaker, created_id) == ("pending", 0)


CARD_CASES = [
    ({"number": "1234"}, "number"),
    ({"number": "1234-5678-1234-5678"}, "number"),
    ({"number": "12345678123456781234"}, "number"),
    ({"number": 1234567812345678}, "number"),
    ({"expiry": "1/40"}, "expiry"),
    ({"expiry": "13-2040"}, "expiry"),
    ({"expiry": "01-2020"}, "expiry"),
    ({"name": ""}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"cvv": "123"}, "cvv"),
]


@pytest.mark.parametrize(("change", "field"), CARD_CASES, ids=[repr(c) for c, _ in CARD_CASES])
async def test_a_malformed_card_is_named_and_nothing_changes(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    change: dict[str, Any],
    field: str,
) -> None:
    client = await create_client(paying_api, auth)
    invoice = await seed_invoice(paying_api, auth, client["id"])
    card = {**SEED_CARD, **change}

    paying = await paying_api.post(f"/invoice/pay/{invoice['id']}", json=card, headers=auth)
    creating = await paying_api.post(
        "/invoice",
        json={"jobDescription": "Work", "amount": 10, "customerId": client["id"], "card": card},
        headers=auth,
    )

    assert paying.status_code == creating.status_code == 422
    assert [e["field"] for e in paying.json()["errors"]] == [field]
    assert [e["field"] for e in creating.json()["errors"]] == [f"card.{field}"]
    for response in (paying, creating):
        assert "1234567812345678" not in response.text
    assert await invoice_state(sessionmaker, invoice["id"]) == ("pending", 0)
    listed = (await paying_api.get("/invoices", headers=auth)).json()
    assert [i["id"] for i in listed] == [invoice["id"]]


async def test_a_card_the_payment_service_refuses_is_named_as_the_client_sent_it(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    fakepay_control: FakePayControl,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The payment service also refuses a control character in the name, which this service
    lets through: its 422 is passed on, the field named in the client's own terms."""
    client = await create_client(paying_api, auth)
    invoice = await seed_invoice(paying_api, auth, client["id"])
    card = {**WORK_CARD, "name": "Work\u0007Card"}

    paying = await paying_api.post(f"/invoice/pay/{invoice['id']}", json=card, headers=auth)
    creating = await paying_api.post(
        "/invoice",
        json={"jobDescription": "Work", "amount": 10, "customerId": client["id"], "card": card},
        headers=auth,
    )

    assert paying.status_code == creating.status_code == 422, paying.text
    assert [e["field"] for e in paying.json()["errors"]] == ["name"]
    assert [e["field"] for e in creating.json()["errors"]] == ["card.name"]
    assert paying.json()["invoice_id"] == invoice["id"]
    assert await invoice_state(sessionmaker, invoice["id"]) == ("pending", 0)
    assert await invoice_state(sessionmaker, creating.json()["invoice_id"]) == ("pending", 0)
    assert charges(fakepay_control, invoice["id"]) == 0


async def test_ten_payments_of_one_invoice_at_once_charge_it_once(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    fakepay_control: FakePayControl,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(paying_api, auth)
    invoice = await seed_invoice(paying_api, auth, client["id"])

    responses = await asyncio.gather(
        *(
            paying_api.post(f"/invoice/pay/{invoice['id']}", json=WORK_CARD, headers=auth)
            for _ in range(10)
        )
    )

    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    assert charges(fakepay_control, invoice["id"]) == 1
    assert await invoice_state(sessionmaker, invoice["id"]) == ("paid", 1)


async def test_a_payment_whose_answer_was_lost_is_not_charged_again(
    paying_api: httpx.AsyncClient,
    payment_api: str,
    auth: dict[str, str],
    fakepay_control: FakePayControl,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The payment service charged the invoice but this service never recorded it (its
    process died before the commit). Paying again answers PAID with the card that paid,
    charges nothing, and the invoice is PAID here too."""
    client = await create_client(paying_api, auth)
    invoice = await seed_invoice(paying_api, auth, client["id"])
    async with httpx.AsyncClient(base_url=payment_api) as payments:
        lost = await payments.post(
            "/internal/invoice-payments",
            json={
                "invoice_id": invoice["id"],
                "amount": "299.99",
                "currency": "USD",
                "description": "Building Payment System",
                "card": SEED_CARD,
            },
            headers=auth,
        )
    assert lost.status_code == 201, lost.text

    again = await paying_api.post(f"/invoice/pay/{invoice['id']}", json=WORK_CARD, headers=auth)

    assert again.status_code == 201, again.text
    assert again.json()["invoiceStatus"] == "PAID"
    assert again.json()["card"] == {
        "number": "123456********5678",
        "expiry": "01-2040",
        "name": "J Doe",
    }
    assert charges(fakepay_control, invoice["id"]) == 1
    assert await invoice_state(sessionmaker, invoice["id"]) == ("paid", 1)


async def test_no_table_or_log_line_of_the_invoice_service_holds_a_card_number(
    paying_api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await create_client(paying_api, auth)
    created = await paying_api.post(
        "/invoice",
        json={"jobDescription": "Work", "amount": 5, "customerId": client["id"], "card": SEED_CARD},
        headers={**auth, "Idempotency-Key": f"card-scan-{uuid.uuid4()}"},
    )
    invoice = await seed_invoice(paying_api, auth, client["id"])
    paid = await paying_api.post(f"/invoice/pay/{invoice['id']}", json=WORK_CARD, headers=auth)
    assert (created.status_code, paid.status_code) == (201, 201)

    found = []
    async with sessionmaker() as session:
        tables = (await session.execute(text("SHOW TABLES"))).scalars().all()
        for table in tables:
            # The names come from SHOW TABLES of the test's own schema.
            query = text(f"SELECT * FROM `{table}`")  # noqa: S608
            for row in (await session.execute(query)).all():
                stored = " ".join(
                    value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                    for value in row
                )
                found += [(table, n) for n in FULL_NUMBERS if n in stored]
    assert found == []
    assert caplog.records, "the requests were logged"
    assert [n for n in FULL_NUMBERS if n in caplog.text] == []
