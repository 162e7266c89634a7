"""Kafka handlers of the payment service, as thin as the routes: parse, call the service.

`user.deleted` from `user.events` closes the account here, so its unexpired access tokens are
refused by this service too. `invoice.created` and `invoice.status_changed` from
`invoice.events` keep the copy of invoices the monthly billing run charges.
`email.status_changed` from `email.events` with status "failed" gives the send's wallet fee
back (once: the refund carries the fee's reference); a bounced email was carried, and its fee
is kept (docs/email.md). The worker wires these handlers into one consumer group with an
inbox, so a redelivered event is handled once.
"""

import uuid
from datetime import date
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import CloudEvent
from common.inbox import Handler
from common.logging import get_logger
from payment import service, wallet
from payment.exceptions import DebitNotFound

log = get_logger(__name__)


class UserDeleted(BaseModel):
    user_id: uuid.UUID


async def on_user_deleted(session: AsyncSession, event: CloudEvent) -> None:
    deleted = UserDeleted.model_validate(event.data)
    # The event's time, not ours: a backlog applied late still dates the deletion right.
    await service.close_owner_account(session, deleted.user_id, event.time)


class EmailFee(BaseModel):
    reference: str


class EmailStatusChanged(BaseModel):
    owner_id: uuid.UUID
    status: str
    fee: EmailFee | None = None


async def on_email_status_changed(session: AsyncSession, event: CloudEvent) -> None:
    changed = EmailStatusChanged.model_validate(event.data)
    if changed.status != "failed" or changed.fee is None:
        return
    try:
        await wallet.refund_fee(session, changed.owner_id, changed.fee.reference)
    except DebitNotFound:
        # No fee under that reference (it was never taken): nothing to give back.
        log.warning("email_fee_not_found", reference=changed.fee.reference)


class InvoiceCreated(BaseModel):
    """The slice of the invoice service's `invoice.created` the billing run needs."""

    invoice_id: uuid.UUID
    number: str | None = None
    client_id: int
    client_name: str | None = None
    client_email: str | None = None
    amount: Decimal
    currency: str
    status: str
    due_date: date


class InvoiceStatusChanged(BaseModel):
    invoice_id: uuid.UUID
    client_id: int
    status: str
    amount: Decimal
    currency: str
    due_date: date


async def on_invoice_created(session: AsyncSession, event: CloudEvent) -> None:
    invoice = InvoiceCreated.model_validate(event.data)
    await service.copy_invoice(session, uuid.UUID(event.subject), invoice.model_dump())


async def on_invoice_status_changed(session: AsyncSession, event: CloudEvent) -> None:
    change = InvoiceStatusChanged.model_validate(event.data)
    await service.copy_invoice(session, uuid.UUID(event.subject), change.model_dump())


CONSUMER_GROUP = "payment-service"
USER_TOPIC = "user.events"
INVOICE_TOPIC = "invoice.events"
EMAIL_TOPIC = "email.events"
HANDLERS: dict[str, Handler] = {
    "user.deleted": on_user_deleted,
    "invoice.created": on_invoice_created,
    "invoice.status_changed": on_invoice_status_changed,
    "email.status_changed": on_email_status_changed,
}
TOPICS: list[str] = [USER_TOPIC, INVOICE_TOPIC, EMAIL_TOPIC]
