"""Events the email service publishes on `email.events`; consumers keep slim copies.

`email.status_changed`: a message moved on (queued, sending, sent, delivered, bounced,
failed). The subject (and Kafka key) is the owner's user id. `fee` is the wallet fee the
invoice service took for the send (null for notices); the payment service gives it back when
the status is `failed`. A `bounced` message was carried and the recipient's server refused
it: the platform did its work and the fee is kept.
"""

import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, PlainSerializer, WithJsonSchema

from common.types import UtcDateTime, money_text

TOPIC = "email.events"
SOURCE = "/services/email"

EMAIL_STATUS_CHANGED = "email.status_changed"

AmountText = Annotated[
    Decimal,
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "examples": ["0.50"]}),
]


class Fee(BaseModel):
    reference: str
    amount: AmountText
    currency: str


class EmailStatusChanged(BaseModel):
    message_id: uuid.UUID  # the send_id of invoice.send_requested
    owner_id: uuid.UUID
    invoice_id: uuid.UUID | None
    kind: str  # invoice | payment_failed | receipt
    status: str
    previous_status: str | None
    provider: str | None  # the provider that carried it, once one did
    reason: str | None  # why it failed or bounced; never a secret
    fee: Fee | None
    occurred_at: UtcDateTime


EVENTS: dict[str, type[BaseModel]] = {EMAIL_STATUS_CHANGED: EmailStatusChanged}
