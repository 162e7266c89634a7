"""Sending an invoice: the PDF stored, the wallet fee taken through the real payment service
(a process, with FakePay for the top-up), then the send and `invoice.send_requested`
committed together; refused with 402 when the wallet is short, 409 for a void invoice, and
the fee given back when the commit fails after it was taken."""

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.identity import TestIssuer
from common.testing.s3 import S3Server
from invoice import service
from invoice.models import InvoiceSend, OutboxMessage

from .conftest import PDF_BUCKET
from .factories import create_client, create_invoice

CARD = {"number": "1234 5656 7822 5678", "expiry": "01-2040", "name": "Work Card"}
# A recipient the trigger below refuses to store: the commit fails after the fee was taken.
FAILING_RECIPIENT = "refused-by-trigger@example.com"


async def top_up(payment_api: str, auth: dict[str, str], amount: str) -> None:
    async with httpx.AsyncClient(base_url=payment_api, timeout=30) as http:
        response = await http.post(
            "/api/wallet/topups",
            json={"amount": amount, "currency": "USD", "card": CARD},
            headers=auth,
        )
    assert response.status_code == 201, response.text


async def balance(payment_api: str, auth: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=payment_api, timeout=30) as http:
        wallet = (await http.get("/api/wallet", headers=auth)).json()
    return next((b["balance"] for b in wallet["balances"] if b["currency"] == "USD"), "0.00")


async def sends_of(
    sessionmaker: async_sessionmaker[AsyncSession], invoice_id: str
) -> tuple[list[InvoiceSend], list[dict[str, Any]]]:
    """The invoice's stored sends and the send events in the outbox."""
    async with sessionmaker() as session:
        sends = list(
            await session.scalars(
                select(InvoiceSend).where(InvoiceSend.invoice_id == uuid.UUID(invoice_id))
            )
        )
        payloads = await session.scalars(
            select(OutboxMessage.payload).where(
                OutboxMessage.payload.contains("invoice.send_requested"),
                OutboxMessage.payload.contains(invoice_id),
            )
        )
        events = [json.loads(payload) for payload in payloads]
    return sends, events


@pytest.fixture
async def sender(paying_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The paying app, answering an unexpected error with its 500 instead of raising it."""
    transport = httpx.ASGITransport(app=paying_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://invoice.test") as client:
        yield client


async def test_a_send_takes_the_fee_and_announces_the_invoice_with_its_pdf(
    sender: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    payment_api: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    s3: S3Server,
) -> None:
    async with sessionmaker() as session, session.begin():
        await service.save_owner_profile(
            session,
            service.OwnerProfile(
                owner_id=owner,
                email="zoe@acme.example",
                name="Zoë Müller",
                company_name="Acme Ltd",
                address_line1=None,
                address_line2=None,
                city=None,
                region=None,
                postal_code=None,
                country=None,
            ),
        )
    await top_up(payment_api, auth, "10.00")
    client = await create_client(sender, auth, name="Zeta", email="ap@zeta.example")
    invoice = await create_invoice(sender, auth, client["id"], amount="99.99")

    response = await sender.post(
        invoice["links"]["send"], json={"message": "Thanks for your business!"}, headers=auth
    )

    assert response.status_code == 202, response.text
    accepted = response.json()
    send_id = accepted["send_id"]
    assert accepted == {
        "send_id": send_id,
        "status": "queued",
        "recipient": "ap@zeta.example",
        "fee": "0.50",
        "fee_currency": "USD",
        "links": {"email": f"/api/emails/{send_id}", "invoice": f"/api/invoices/{invoice['id']}"},
    }
    assert await balance(payment_api, auth) == "9.50"
    sends, events = await sends_of(sessionmaker, invoice["id"])
    assert [str(send.id) for send in sends] == [send_id]
    [event] = events
    assert event["type"] == "invoice.send_requested"
    assert event["subject"] == str(owner)
    data = event["data"]
    pdf = data.pop("pdf")
    requested_at = data.pop("requested_at")
    assert requested_at.endswith("Z")
    assert data == {
        "send_id": send_id,
        "invoice_id": invoice["id"],
        "owner_id": str(owner),
        "recipient": {"email": "ap@zeta.example", "name": "Zeta"},
        "reply_to": "zoe@acme.example",
        "sender_name": "Acme Ltd",
        "subject": "Invoice INV-000001 from Acme Ltd",
        "message": "Thanks for your business!",
        "invoice": {
            "number": "INV-000001",
            "description": "Software Development and Testing",
            "amount": "99.99",
            "currency": "USD",
            "due_date": "2030-01-31",
            "status": "pending",
            "client_name": "Zeta",
        },
        "fee": {"reference": f"invoice-send:{send_id}", "amount": "0.50", "currency": "USD"},
    }
    # The claim check: the email service finds the PDF where the event says.
    assert pdf["bucket"] == PDF_BUCKET
    assert pdf["filename"] == "INV-000001.pdf"
    stored = s3.client().get_object(Bucket=pdf["bucket"], Key=pdf["key"])
    assert stored["ETag"] == pdf["etag"]
    assert stored["ContentLength"] == pdf["size"]
    assert stored["Body"].read().startswith(b"%PDF-")


async def test_another_recipient_can_be_named(
    sender: httpx.AsyncClient, auth: dict[str, str], payment_api: str
) -> None:
    await top_up(payment_api, auth, "1.00")
    client = await create_client(sender, auth)
    invoice = await create_invoice(sender, auth, client["id"])

    response = await sender.post(
        invoice["links"]["send"], json={"to": "accounts@elsewhere.example"}, headers=auth
    )

    assert response.status_code == 202, response.text
    assert response.json()["recipient"] == "accounts@elsewhere.example"


async def test_a_short_wallet_is_402_and_nothing_is_sent(
    sender: httpx.AsyncClient,
    auth: dict[str, str],
    payment_api: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(sender, auth)
    invoice = await create_invoice(sender, auth, client["id"])

    response = await sender.post(invoice["links"]["send"], json={}, headers=auth)

    assert response.status_code == 402, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["fee_amount"] == "0.50"
    assert await sends_of(sessionmaker, invoice["id"]) == ([], [])


async def test_a_void_invoice_is_not_sent(
    sender: httpx.AsyncClient,
    auth: dict[str, str],
    payment_api: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await top_up(payment_api, auth, "5.00")
    client = await create_client(sender, auth)
    invoice = await create_invoice(sender, auth, client["id"])
    await sender.post(f"/api/invoices/{invoice['id']}/void", headers=auth)

    response = await sender.post(invoice["links"]["send"], json={}, headers=auth)

    assert response.status_code == 409, response.text
    assert await balance(payment_api, auth) == "5.00"
    assert await sends_of(sessionmaker, invoice["id"]) == ([], [])


async def test_the_fee_is_given_back_when_the_send_cannot_be_recorded(
    sender: httpx.AsyncClient,
    auth: dict[str, str],
    payment_api: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # A real failure of the commit, after the fee is taken: the database refuses the row.
    async with sessionmaker() as session, session.begin():
        await session.execute(text("DROP TRIGGER IF EXISTS refuse_test_recipient"))
        await session.execute(
            text(
                "CREATE TRIGGER refuse_test_recipient BEFORE INSERT ON invoice_sends "
                "FOR EACH ROW BEGIN "
                f"IF NEW.recipient_email = '{FAILING_RECIPIENT}' THEN "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused for the test'; "
                "END IF; END"
            )
        )
    await top_up(payment_api, auth, "2.00")
    client = await create_client(sender, auth)
    invoice = await create_invoice(sender, auth, client["id"])

    response = await sender.post(
        invoice["links"]["send"], json={"to": FAILING_RECIPIENT}, headers=auth
    )

    assert response.status_code == 500
    assert await balance(payment_api, auth) == "2.00"
    async with httpx.AsyncClient(base_url=payment_api) as http:
        history = (await http.get("/api/wallet/transactions", headers=auth)).json()["items"]
    assert [entry["type"] for entry in history] == ["refund", "fee", "topup"]
    assert await sends_of(sessionmaker, invoice["id"]) == ([], [])


async def test_another_owners_invoice_is_not_found_and_costs_nothing(
    sender: httpx.AsyncClient, auth: dict[str, str], payment_api: str, test_issuer: TestIssuer
) -> None:
    client = await create_client(sender, auth)
    invoice = await create_invoice(sender, auth, client["id"])
    mallory = test_issuer.headers(uuid.uuid4())
    await top_up(payment_api, mallory, "1.00")

    theirs = await sender.post(invoice["links"]["send"], json={}, headers=mallory)
    missing = await sender.post(f"/api/invoices/{uuid.uuid4()}/send", json={}, headers=mallory)

    assert theirs.status_code == 404
    assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())
    assert await balance(payment_api, mallory) == "1.00"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "not an email"}, "to"),
        ({"message": "x" * 2001}, "message"),
        ({"message": 5}, "message"),
        ({"cc": "a@example.com"}, "cc"),
    ],
)
async def test_bad_send_bodies_are_refused_naming_the_field(
    sender: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any], field: str
) -> None:
    client = await create_client(sender, auth)
    invoice = await create_invoice(sender, auth, client["id"])

    response = await sender.post(invoice["links"]["send"], json=body, headers=auth)

    assert response.status_code == 422
    assert field in [error["field"] for error in response.json()["errors"]]


async def test_sends_are_counted_once_per_idempotency_key(
    sender: httpx.AsyncClient,
    auth: dict[str, str],
    payment_api: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await top_up(payment_api, auth, "3.00")
    client = await create_client(sender, auth)
    invoice = await create_invoice(sender, auth, client["id"])
    headers = {**auth, "Idempotency-Key": f"send-{uuid.uuid4()}"}

    first = await sender.post(invoice["links"]["send"], json={}, headers=headers)
    again = await sender.post(invoice["links"]["send"], json={}, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert await balance(payment_api, auth) == "2.50"
    sends, _ = await sends_of(sessionmaker, invoice["id"])
    assert len(sends) == 1
