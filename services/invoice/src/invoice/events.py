"""Events the invoice service publishes on `invoice.events`; consumers keep slim copies."""

import uuid
from datetime import date
from decimal import Decimal

from pydantic import BaseModel

TOPIC = "invoice.events"
SOURCE = "/services/invoice"

INVOICE_CREATED = "invoice.created"
INVOICE_STATUS_CHANGED = "invoice.status_changed"


class InvoiceCreated(BaseModel):
    invoice_id: uuid.UUID
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


# Each event type's payload model: the events catalogue (docs/events.md) is written from it.
EVENTS: dict[str, type[BaseModel]] = {
    INVOICE_CREATED: InvoiceCreated,
    INVOICE_STATUS_CHANGED: InvoiceStatusChanged,
}
