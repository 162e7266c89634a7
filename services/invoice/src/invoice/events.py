"""Events the invoice service publishes on `invoice.events`; consumers keep slim copies."""

import uuid
from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from common.types import UtcDateTime

TOPIC = "invoice.events"
SOURCE = "/services/invoice"

INVOICE_CREATED = "invoice.created"
INVOICE_STATUS_CHANGED = "invoice.status_changed"
INVOICE_SEND_REQUESTED = "invoice.send_requested"


class InvoiceCreated(BaseModel):
    invoice_id: uuid.UUID
    number: str
    client_id: int
    client_name: str
    client_email: str
    description: str
    amount: Decimal
    currency: str
    status: str
    due_date: date


class InvoiceStatusChanged(BaseModel):
    invoice_id: uuid.UUID
    client_id: int
    previous_status: str
    status: str
    amount: Decimal
    currency: str
    due_date: date


class Recipient(BaseModel):
    email: str
    name: str | None


class SentInvoice(BaseModel):
    """What the email's body says about the invoice."""

    number: str
    description: str
    amount: str = Field(description='A decimal string, exact to the cent: "99.99"')
    currency: str
    due_date: date
    status: str
    client_name: str


class StoredPdf(BaseModel):
    """Where the invoice's PDF is: the email service reads it from the bucket to attach it
    (a claim check: the file itself never travels through Kafka)."""

    bucket: str
    key: str
    etag: str
    filename: str
    size: int


class SendFee(BaseModel):
    """The wallet fee taken for the send; `reference` is the debit to refund if the email
    fails for good."""

    reference: str
    amount: str = Field(description="A decimal string")
    currency: str


class InvoiceSendRequested(BaseModel):
    """The owner asked for the invoice to be emailed; the fee is taken already."""

    send_id: uuid.UUID
    invoice_id: uuid.UUID
    owner_id: uuid.UUID
    recipient: Recipient
    reply_to: str | None
    sender_name: str
    subject: str
    message: str | None
    invoice: SentInvoice
    pdf: StoredPdf
    fee: SendFee
    requested_at: UtcDateTime


# Each event type's payload model: the events catalogue (docs/events.md) is written from it.
EVENTS: dict[str, type[BaseModel]] = {
    INVOICE_CREATED: InvoiceCreated,
    INVOICE_STATUS_CHANGED: InvoiceStatusChanged,
    INVOICE_SEND_REQUESTED: InvoiceSendRequested,
}
