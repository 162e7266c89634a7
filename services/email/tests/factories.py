"""Events as their producers publish them, and the PDFs they point at."""

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from common.testing.s3 import S3Server
from mailer import consumers

BUCKET = "ledgerline-invoice-pdfs"
PDF = b"%PDF-1.4\n" + b"0" * 20_000 + b"\n%%EOF\n"


def put_pdf(aws: S3Server, key: str, content: bytes = PDF) -> dict[str, Any]:
    """Store a PDF as the invoice service does; the claim the event carries."""
    answer = aws.client("s3").put_object(
        Bucket=BUCKET, Key=key, Body=content, ContentType="application/pdf"
    )
    return {
        "bucket": BUCKET,
        "key": key,
        "etag": answer["ETag"],
        "filename": key.rsplit("/", 1)[-1],
        "size": len(content),
    }


def send_requested(
    owner_id: uuid.UUID,
    pdf: dict[str, Any],
    *,
    send_id: uuid.UUID | None = None,
    invoice_id: uuid.UUID | None = None,
    recipient: str = "client@example.com",
    **overrides: Any,
) -> CloudEvent:
    """invoice.send_requested as the invoice service publishes it."""
    send_id = send_id or uuid.uuid4()
    data: dict[str, Any] = {
        "send_id": str(send_id),
        "invoice_id": str(invoice_id or uuid.uuid4()),
        "owner_id": str(owner_id),
        "recipient": {"email": recipient, "name": "Client & Co <b>"},
        "reply_to": "owner@example.com",
        "sender_name": "Owner Ltd",
        "subject": "Invoice INV-0001",
        "message": "Thanks for your business.",
        "invoice": {
            "number": "INV-0001",
            "description": "Design work <script>alert(1)</script>",
            "amount": "99.99",
            "currency": "USD",
            "due_date": "2026-12-31",
            "status": "PENDING",
            "client_name": "Client & Co <b>",
        },
        "pdf": pdf,
        "fee": {"reference": f"email-send:{send_id}", "amount": "0.50", "currency": "USD"},
        "requested_at": datetime.now(UTC).isoformat(),
    }
    data.update(overrides)
    return CloudEvent(
        source="/services/invoice",
        type="invoice.send_requested",
        subject=str(owner_id),
        data=data,
    )


def payment_failed(owner_id: uuid.UUID, **overrides: Any) -> CloudEvent:
    data: dict[str, Any] = {
        "payment_id": str(uuid.uuid4()),
        "invoice_id": str(uuid.uuid4()),
        "owner_id": str(owner_id),
        "amount": "120.00",
        "currency": "USD",
        "kind": "autopay",
        "card_last4": "0002",
        "failure_code": "insufficient_funds",
        "client_email": "payer@example.com",
        "client_name": "Payer Inc",
        "final": False,
        "next_attempt_at": "2026-12-07T09:00:00Z",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    data.update(overrides)
    return CloudEvent(
        source="/services/payment", type="payment.failed", subject=str(owner_id), data=data
    )


def payment_succeeded(owner_id: uuid.UUID, **overrides: Any) -> CloudEvent:
    """payment.succeeded of a client's card payment of an invoice, as the payment service
    publishes it."""
    data: dict[str, Any] = {
        "payment_id": str(uuid.uuid4()),
        "invoice_id": str(uuid.uuid4()),
        "owner_id": str(owner_id),
        "amount": "99.99",
        "currency": "USD",
        "kind": "invoice",
        "card_last4": "5678",
        "occurred_at": datetime.now(UTC).isoformat(),
        "client_email": "payer@example.com",
        "client_name": "Payer Inc",
        "invoice_number": "INV-000012",
    }
    data.update(overrides)
    return CloudEvent(
        source="/services/payment", type="payment.succeeded", subject=str(owner_id), data=data
    )


async def handle(sessionmaker: async_sessionmaker[AsyncSession], event: CloudEvent) -> None:
    """As the worker's consumer runs a handler: in a transaction of its own."""
    async with sessionmaker() as session, session.begin():
        await consumers.HANDLERS[event.type](session, event)


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
