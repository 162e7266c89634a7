"""Kafka handlers of the invoice service, as thin as the routes: parse, call the service.

The owner's profile comes from `user.events`; succeeded card payments of invoices from
`payment.events`. Imported invoices arrive from the sync service as
`billing.invoices_imported`, a page at a time, and are upserted by (owner, source, platform id).
"""

import uuid
from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import CloudEvent
from common.inbox import Handler
from invoice import service
from invoice.models import InvoiceStatus


class Address(BaseModel):
    """The fields of the user service's address that an invoice header shows."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None


class UserProfile(BaseModel):
    """The slice of `user.registered` / `user.updated` this service keeps."""

    user_id: uuid.UUID
    email: str | None = None
    name: str | None = None
    company_name: str | None = None
    address: Address | None = None


class UserDeleted(BaseModel):
    user_id: uuid.UUID


async def on_user_profile(session: AsyncSession, event: CloudEvent) -> None:
    profile = UserProfile.model_validate(event.data)
    address = profile.address or Address()
    await service.save_owner_profile(
        session,
        service.OwnerProfile(
            owner_id=profile.user_id,
            email=profile.email,
            name=profile.name,
            company_name=profile.company_name,
            address_line1=address.line1,
            address_line2=address.line2,
            city=address.city,
            region=address.region,
            postal_code=address.postal_code,
            country=address.country,
        ),
    )


async def on_user_deleted(session: AsyncSession, event: CloudEvent) -> None:
    deleted = UserDeleted.model_validate(event.data)
    await service.close_owner_account(session, deleted.user_id, event.time)


class PaymentSucceeded(BaseModel):
    """The slice of the payment service's `payment.succeeded` this service reads."""

    payment_id: str
    invoice_id: uuid.UUID | None = None  # None for a wallet top-up
    owner_id: uuid.UUID
    kind: str


async def on_payment_succeeded(session: AsyncSession, event: CloudEvent) -> None:
    payment = PaymentSucceeded.model_validate(event.data)
    if payment.kind not in ("invoice", "autopay") or payment.invoice_id is None:
        return  # a wallet top-up: nothing of this service's
    await service.record_payment(session, payment.owner_id, payment.invoice_id, payment.payment_id)


class ImportedClientData(BaseModel):
    external_id: str
    name: str
    email: str


class ImportedInvoiceData(BaseModel):
    external_id: str
    number: str
    client_external_id: str
    description: str
    amount: Decimal
    currency: str
    status: InvoiceStatus
    due_date: date
    issued_at: datetime
    removed: bool = False


class InvoicesImported(BaseModel):
    """The slice of the sync service's `billing.invoices_imported` this service reads."""

    owner_id: uuid.UUID
    source: str
    clients: list[ImportedClientData]
    invoices: list[ImportedInvoiceData]


async def on_invoices_imported(session: AsyncSession, event: CloudEvent) -> None:
    data = InvoicesImported.model_validate(event.data)
    batch = service.ImportBatch(
        owner_id=data.owner_id,
        source=data.source,
        clients=[service.ImportedClient(**c.model_dump()) for c in data.clients],
        invoices=[service.ImportedInvoice(**i.model_dump()) for i in data.invoices],
    )
    await service.apply_import(session, batch)


class PaymentFailed(BaseModel):
    """The slice of `payment.failed` this service reads: a billing-run charge given up on."""

    invoice_id: uuid.UUID | None = None
    owner_id: uuid.UUID
    kind: str
    failure_code: str
    final: bool = False


async def on_payment_failed(session: AsyncSession, event: CloudEvent) -> None:
    failed = PaymentFailed.model_validate(event.data)
    if failed.kind != "autopay" or not failed.final or failed.invoice_id is None:
        return  # a card payment the user saw fail, or a charge that will be retried
    await service.record_final_payment_failure(
        session, failed.owner_id, failed.invoice_id, failed.failure_code
    )


CONSUMER_GROUP = "invoice-service"
USER_TOPIC = "user.events"
PAYMENT_TOPIC = "payment.events"
HANDLERS: dict[str, Handler] = {
    "user.registered": on_user_profile,
    "user.updated": on_user_profile,
    "user.deleted": on_user_deleted,
    "payment.succeeded": on_payment_succeeded,
    "billing.invoices_imported": on_invoices_imported,
    "payment.failed": on_payment_failed,
}
SYNC_TOPIC = "sync.events"
TOPICS: list[str] = [USER_TOPIC, PAYMENT_TOPIC, SYNC_TOPIC]
