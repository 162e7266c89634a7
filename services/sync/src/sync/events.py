"""What the sync service publishes.

`sync.events`: `billing.invoices_imported`, one event per page read (a batch), subject and
key the owner's id. It carries only what changed since the last read of the same records,
each invoice with its client, and invoices the platform no longer lists with `removed` true.
The invoice service upserts them by (owner, source, external id).

Job commands on `sync.jobs` are internal to this service: see commands.py.
"""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, PlainSerializer, WithJsonSchema

from common.types import money_text

TOPIC = "sync.events"
SOURCE = "/services/sync"
# The name imported records carry in the invoice service: (owner, source, external id).
PLATFORM_SOURCE = "billing_platform"

INVOICES_IMPORTED = "billing.invoices_imported"

AmountText = Annotated[
    Decimal,
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "examples": ["25.00"]}),
]
ImportedStatus = Literal["pending", "past_due", "paid", "void"]


class ImportedClient(BaseModel):
    external_id: str
    name: str
    email: str


class ImportedInvoice(BaseModel):
    external_id: str
    number: str
    client_external_id: str
    description: str
    amount: AmountText
    currency: str
    status: ImportedStatus
    due_date: date
    issued_at: datetime
    removed: bool = False


class InvoicesImported(BaseModel):
    owner_id: uuid.UUID
    connection_id: uuid.UUID
    source: str = PLATFORM_SOURCE
    clients: list[ImportedClient]
    invoices: list[ImportedInvoice]


EVENTS: dict[str, type[BaseModel]] = {
    INVOICES_IMPORTED: InvoicesImported,
}
