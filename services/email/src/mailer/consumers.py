"""Kafka handlers of the email service, as thin as the routes: parse, call the service.

- `invoice.send_requested` (invoice.events): queue the invoice email, PDF by claim check.
- `payment.failed` (payment.events) with kind "autopay": queue a notice to the client; other
  kinds (a card the owner or client typed in, who saw the answer at once) are ignored.
- `payment.succeeded` (payment.events) of an invoice (kinds "invoice" and "autopay") that
  names the client's email: queue a receipt to the client, once per payment. Top-ups (no
  invoice) and events without an address send nothing. Like the notice, a receipt is the
  platform's own message and costs the owner no wallet fee.

The models below are slim copies of the producers' events: only the fields read here.
Addresses are read as text, not as EmailStr: an address no provider could carry is a fact
about one email, recorded as that email's failure with its reason (service.address_problem),
not a malformed event to dead-letter (which would lose the notice, and an invoice email's fee
with it).
"""

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import CloudEvent
from common.inbox import Handler
from mailer import compose, service
from mailer.config import get_settings
from mailer.models import MessageKind

# Notices get ids derived from the event that asked for them, so the same event (even
# re-published under a new envelope id by a retried producer) cannot make two messages.
NOTICE_NAMESPACE = uuid.UUID("6b1f4c1e-7a1c-4c59-9a53-6f8f3b0b2f11")


class Recipient(BaseModel):
    email: str
    name: str


class InvoiceFacts(BaseModel):
    number: str
    description: str
    amount: str
    currency: str
    due_date: str
    client_name: str


class PdfClaim(BaseModel):
    bucket: str
    key: str
    etag: str
    filename: str
    size: int


class FeeTaken(BaseModel):
    reference: str
    amount: Decimal
    currency: str


class InvoiceSendRequested(BaseModel):
    send_id: uuid.UUID
    invoice_id: uuid.UUID
    owner_id: uuid.UUID
    recipient: Recipient
    reply_to: str | None
    sender_name: str
    subject: str
    message: str | None
    invoice: InvoiceFacts
    pdf: PdfClaim
    fee: FeeTaken
    requested_at: datetime


class PaymentFailed(BaseModel):
    kind: str
    invoice_id: uuid.UUID | None = None
    client_email: str | None = None
    client_name: str | None = None
    amount: str | None = None
    currency: str | None = None
    failure_code: str | None = None
    final: bool = False
    next_attempt_at: datetime | None = None
    payment_id: uuid.UUID | None = None


class PaymentSucceeded(BaseModel):
    payment_id: uuid.UUID
    invoice_id: uuid.UUID | None = None
    kind: str
    amount: str
    currency: str
    card_last4: str
    occurred_at: datetime
    client_email: str | None = None
    client_name: str | None = None
    invoice_number: str | None = None


def one_line(text: str) -> str:
    """A header's value on one line: a line break in a subject or a name would end the
    header (and is refused by the MIME writer), so it becomes a space."""
    return " ".join(text.split())


async def on_send_requested(session: AsyncSession, event: CloudEvent) -> None:
    request = InvoiceSendRequested.model_validate(event.data)
    body = compose.invoice_body(
        client_name=request.invoice.client_name or request.recipient.name,
        sender_name=request.sender_name,
        number=request.invoice.number,
        description=request.invoice.description,
        amount=request.invoice.amount,
        currency=request.invoice.currency,
        due_date=request.invoice.due_date,
        message=request.message,
    )
    await service.queue_invoice_email(
        session,
        service.InvoiceEmail(
            send_id=request.send_id,
            owner_id=request.owner_id,
            invoice_id=request.invoice_id,
            recipient_email=request.recipient.email,
            recipient_name=one_line(request.recipient.name),
            reply_to=request.reply_to or None,
            sender_name=one_line(request.sender_name),
            subject=one_line(request.subject),
            body=body,
            pdf_bucket=request.pdf.bucket,
            pdf_key=request.pdf.key,
            pdf_etag=request.pdf.etag,
            pdf_filename=request.pdf.filename,
            pdf_size=request.pdf.size,
            fee_reference=request.fee.reference,
            fee_amount=request.fee.amount,
            fee_currency=request.fee.currency,
            requested_at=request.requested_at,
        ),
    )


async def on_payment_failed(session: AsyncSession, event: CloudEvent) -> None:
    if event.data.get("kind") != "autopay":
        return  # a card payment or a top-up the owner saw fail themselves: nobody to tell
    failed = PaymentFailed.model_validate(event.data)
    if not failed.client_email:
        return
    settings = get_settings()
    name = failed.client_name or failed.client_email
    body = compose.payment_failed_body(
        client_name=name,
        platform_name=settings.platform_name,
        amount=failed.amount or "",
        currency=failed.currency or "",
        failure_code=failed.failure_code or "declined",
        final=failed.final,
        next_attempt_at=failed.next_attempt_at,
    )
    key = str(failed.payment_id) if failed.payment_id else event.id
    await service.queue_notice(
        session,
        service.Notice(
            message_id=uuid.uuid5(NOTICE_NAMESPACE, f"payment.failed:{key}"),
            owner_id=uuid.UUID(event.subject),
            invoice_id=failed.invoice_id,
            kind=MessageKind.PAYMENT_FAILED,
            recipient_email=failed.client_email,
            recipient_name=one_line(name),
            sender_name=settings.platform_name,
            subject="Your automatic payment could not be taken",
            body=body,
            requested_at=event.time,
        ),
    )


async def on_payment_succeeded(session: AsyncSession, event: CloudEvent) -> None:
    if event.data.get("kind") not in ("invoice", "autopay"):
        return  # a wallet top-up: the owner saw it succeed, and there is no client
    paid = PaymentSucceeded.model_validate(event.data)
    if paid.invoice_id is None or not paid.client_email:
        return  # an event from before payments named the client: nobody to send it to
    settings = get_settings()
    name = paid.client_name or paid.client_email
    number = one_line(paid.invoice_number) if paid.invoice_number else None
    body = compose.receipt_body(
        client_name=name,
        platform_name=settings.platform_name,
        number=number,
        amount=paid.amount,
        currency=paid.currency,
        card_last4=paid.card_last4,
        paid_at=paid.occurred_at,
    )
    await service.queue_notice(
        session,
        service.Notice(
            # One receipt per payment, whatever envelope the event came in.
            message_id=uuid.uuid5(NOTICE_NAMESPACE, f"payment.succeeded:{paid.payment_id}"),
            owner_id=uuid.UUID(event.subject),
            invoice_id=paid.invoice_id,
            kind=MessageKind.RECEIPT,
            recipient_email=paid.client_email,
            recipient_name=one_line(name),
            sender_name=settings.platform_name,
            subject=f"Receipt for {number}" if number else "Receipt for your payment",
            body=body,
            requested_at=event.time,
        ),
    )


CONSUMER_GROUP = "email-service"
INVOICE_TOPIC = "invoice.events"
PAYMENT_TOPIC = "payment.events"
HANDLERS: dict[str, Handler] = {
    "invoice.send_requested": on_send_requested,
    "payment.failed": on_payment_failed,
    "payment.succeeded": on_payment_succeeded,
}
TOPICS: list[str] = [INVOICE_TOPIC, PAYMENT_TOPIC]
