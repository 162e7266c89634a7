"""Domain operations of the invoice service. They stage changes and events; the edge commits."""

import uuid
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import InvalidInput
from common.events import new_event
from common.logging import get_logger
from common.outbox import add_event
from common.pagination import CursorCodec, Page
from common.types import CENT
from invoice import repository
from invoice.events import (
    INVOICE_CREATED,
    INVOICE_STATUS_CHANGED,
    SOURCE,
    TOPIC,
    InvoiceCreated,
    InvoiceStatusChanged,
)
from invoice.exceptions import (
    ClientNotFound,
    InvoiceNotFound,
    InvoiceNotOpen,
    InvoiceNotPayable,
    UnknownClient,
)
from invoice.models import OPEN_STATUSES, Client, Invoice, InvoiceStatus, OutboxMessage, Owner
from invoice.payments import CardDetails, InvoicePayment, PaymentClient, PaymentMade
from invoice.repository import InvoiceFilter, InvoiceRow

log = get_logger(__name__)


@dataclass(frozen=True)
class NewInvoice:
    client_id: int
    description: str
    amount: Decimal
    currency: str
    due_date: date


@dataclass(frozen=True)
class ListRequest:
    filters: InvoiceFilter
    order_by: str
    order_dir: str
    limit: int
    cursor: str | None


def today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class OwnerProfile:
    owner_id: uuid.UUID
    email: str | None
    name: str | None
    company_name: str | None
    address_line1: str | None
    address_line2: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    country: str | None


PROFILE_FIELDS = [f.name for f in fields(OwnerProfile) if f.name != "owner_id"]


# --- owners -----------------------------------------------------------------------------------


async def save_owner_profile(session: AsyncSession, profile: OwnerProfile) -> None:
    """Keep the latest profile; a deleted account's late updates are ignored."""
    owner = await session.get(Owner, profile.owner_id, with_for_update=True)
    if owner is None:
        owner = Owner(id=profile.owner_id)
        session.add(owner)
    elif owner.deleted_at is not None:
        return
    for name in PROFILE_FIELDS:
        setattr(owner, name, getattr(profile, name))
    await session.flush()


async def close_owner_account(
    session: AsyncSession, owner_id: uuid.UUID, deleted_at: datetime
) -> None:
    """Forget the person behind a deleted account and refuse its tokens from now on.

    Clients and invoices stay, as bookkeeping records nobody can reach any more.
    """
    owner = await session.get(Owner, owner_id, with_for_update=True)
    if owner is None:
        owner = Owner(id=owner_id)
        session.add(owner)
    for name in PROFILE_FIELDS:
        setattr(owner, name, None)
    owner.deleted_at = deleted_at.astimezone(UTC).replace(tzinfo=None)
    await session.flush()


async def accounts_closed_since(session: AsyncSession, since: datetime) -> set[uuid.UUID]:
    return set(await repository.owners_deleted_since(session, since))


# --- clients ----------------------------------------------------------------------------------


async def create_client(
    session: AsyncSession, owner_id: uuid.UUID, name: str, email: str
) -> Client:
    client = Client(owner_id=owner_id, name=name, email=email)
    session.add(client)
    await session.flush()
    return client


async def get_client(session: AsyncSession, owner_id: uuid.UUID, client_id: int) -> Client:
    client = await repository.get_client(session, owner_id, client_id)
    if client is None:
        raise ClientNotFound()
    return client


async def list_clients(
    session: AsyncSession, codec: CursorCodec, owner_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[Client]:
    after = None
    if cursor is not None:
        position = codec.decode(cursor)
        after = _read_position(position, "clients", lambda p: (str(p["name"]), int(p["id"])))
    rows = list(await repository.list_clients(session, owner_id, after, limit + 1))
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = codec.encode({"q": "clients", "name": last.name, "id": last.id})
    return Page(rows[:limit], next_cursor)


async def clients_of(
    session: AsyncSession, owner_id: uuid.UUID, invoices: list[InvoiceRow]
) -> dict[int, Client]:
    """The clients the invoices were sent to, by id."""
    return await repository.clients_by_id(session, owner_id, {i.client_id for i in invoices})


# --- invoices ---------------------------------------------------------------------------------


async def create_invoice(
    session: AsyncSession, owner_id: uuid.UUID, new: NewInvoice, *, client_field: str
) -> tuple[Invoice, Client]:
    """Create a pending invoice for one of the owner's clients and announce it."""
    client = await repository.get_client(session, owner_id, new.client_id)
    if client is None:
        raise UnknownClient(client_field)
    invoice = Invoice(
        owner_id=owner_id,
        client_id=client.id,
        client_name=client.name,
        description=new.description,
        # "1000" and "1000.00" are one amount: stored, announced and answered as "1000.00".
        amount=new.amount.quantize(CENT),
        currency=new.currency,
        status=InvoiceStatus.PENDING,
        due_date=new.due_date,
    )
    session.add(invoice)
    await session.flush()
    payload = InvoiceCreated(
        invoice_id=invoice.id,
        client_id=client.id,
        client_name=client.name,
        client_email=client.email,
        description=invoice.description,
        amount=invoice.amount,
        currency=invoice.currency,
        status=invoice.status,
        due_date=invoice.due_date,
    )
    add_event(session, OutboxMessage, TOPIC, new_event(SOURCE, INVOICE_CREATED, owner_id, payload))
    return invoice, client


async def get_invoice(session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID) -> Invoice:
    """The owner's invoice; another owner's id is indistinguishable from a missing one."""
    invoice = await repository.get_invoice(session, owner_id, invoice_id)
    if invoice is None:
        raise InvoiceNotFound()
    return invoice


def _change_status(session: AsyncSession, invoice: Invoice, status: InvoiceStatus) -> None:
    previous = invoice.status
    invoice.status = status
    payload = InvoiceStatusChanged(
        invoice_id=invoice.id,
        client_id=invoice.client_id,
        previous_status=previous,
        status=status,
        amount=invoice.amount,
        currency=invoice.currency,
        due_date=invoice.due_date,
    )
    add_event(
        session,
        OutboxMessage,
        TOPIC,
        new_event(SOURCE, INVOICE_STATUS_CHANGED, invoice.owner_id, payload),
    )


async def void_invoice(
    session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID
) -> Invoice:
    """Cancel an open invoice; a paid or already void one cannot be voided."""
    invoice = await repository.get_invoice(session, owner_id, invoice_id, for_update=True)
    if invoice is None:
        raise InvoiceNotFound()
    if invoice.status not in OPEN_STATUSES:
        raise InvoiceNotOpen(invoice.status)
    _change_status(session, invoice, InvoiceStatus.VOID)
    await session.flush()
    return invoice


async def pay_invoice(
    session: AsyncSession,
    payments: PaymentClient,
    access_token: str,
    owner_id: uuid.UUID,
    invoice_id: uuid.UUID,
    card: CardDetails,
    *,
    card_field: str,
) -> tuple[Invoice, PaymentMade]:
    """Charge the card for an open invoice through the payment service and mark it paid.

    The invoice's row stays locked (FOR UPDATE) until the caller commits: a second request
    for the same invoice waits for this one and then finds it paid, so this service never
    asks for two charges of one invoice at once. The payment service guards against a second
    charge on its own as well: when it already holds a succeeded payment for the invoice (a
    request whose answer was lost), it charges nothing and reports that payment, and the
    invoice is marked paid all the same. When the payment fails the invoice is left as it was.
    """
    invoice = await repository.get_invoice(session, owner_id, invoice_id, for_update=True)
    if invoice is None:
        raise InvoiceNotFound()
    if invoice.status not in OPEN_STATUSES:
        raise InvoiceNotPayable(invoice.status)
    payment = InvoicePayment(
        invoice_id=invoice.id,
        amount=invoice.amount,
        currency=invoice.currency,
        description=invoice.description,
        card=card,
    )
    made = await payments.pay_invoice(access_token, payment, card_field=card_field)
    log.info(
        "invoice_paid", invoice_id=str(invoice.id), payment_id=made.payment_id, new=made.created
    )
    _change_status(session, invoice, InvoiceStatus.PAID)
    await session.flush()
    return invoice, made


async def record_payment(
    session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID, payment_id: str
) -> None:
    """Mark the invoice paid after the payment service reports its payment succeeded.

    Usually the invoice is paid already (the request that paid it did so before answering);
    this heals the case of an API process that died between the charge and its commit, or a
    charge whose answer was lost. A paid invoice stays as it is.
    """
    invoice = await repository.get_invoice(session, owner_id, invoice_id, for_update=True)
    if invoice is None:
        log.warning("payment_for_unknown_invoice", invoice_id=str(invoice_id))
        return
    if invoice.status == InvoiceStatus.PAID:
        return
    if invoice.status not in OPEN_STATUSES:
        # Voided after it was charged: money was taken for a cancelled invoice. The invoice
        # stays void; the owner has to refund the client.
        log.warning(
            "payment_for_closed_invoice",
            invoice_id=str(invoice_id),
            payment_id=payment_id,
            status=invoice.status,
        )
        return
    log.info("invoice_paid_from_event", invoice_id=str(invoice_id), payment_id=payment_id)
    _change_status(session, invoice, InvoiceStatus.PAID)
    await session.flush()


async def record_final_payment_failure(
    session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID, reason: str
) -> None:
    """Mark the invoice FAILED when the billing run gives up charging it, so a person sees
    it. Only a pending or past-due invoice changes: a paid or void one stays as it is."""
    invoice = await repository.get_invoice(session, owner_id, invoice_id, for_update=True)
    if invoice is None:
        log.warning("payment_failure_for_unknown_invoice", invoice_id=str(invoice_id))
        return
    if invoice.status not in (InvoiceStatus.PENDING, InvoiceStatus.PAST_DUE):
        return
    log.info("invoice_failed_from_event", invoice_id=str(invoice_id), reason=reason)
    invoice.failure_reason = reason[:40]
    _change_status(session, invoice, InvoiceStatus.FAILED)
    await session.flush()


async def mark_past_due(session: AsyncSession, today: date, batch_size: int = 500) -> int:
    """Move one batch of pending invoices due before today to past due; the count moved."""
    invoices = await repository.pending_past_due(session, today, batch_size)
    for invoice in invoices:
        _change_status(session, invoice, InvoiceStatus.PAST_DUE)
    await session.flush()
    return len(invoices)


async def list_invoices(
    session: AsyncSession, codec: CursorCodec, owner_id: uuid.UUID, request: ListRequest
) -> Page[InvoiceRow]:
    """One page of the owner's invoices, filtered and sorted, after the cursor's row."""
    columns = repository.sort_columns(request.order_by, request.filters)
    query_id = _query_fingerprint(request)
    after = None
    if request.cursor is not None:
        position = codec.decode(request.cursor)
        after = _read_position(
            position,
            query_id,
            lambda p: (
                [_key_value(c, v) for c, v in zip(columns, p["k"], strict=True)],
                uuid.UUID(hex=p["id"]),
            ),
        )
    query = repository.invoice_listing(
        owner_id,
        request.filters,
        request.order_by,
        request.order_dir == "desc",
        after,
        request.limit + 1,
    )
    rows = list(await repository.list_invoices(session, query))
    next_cursor = None
    if len(rows) > request.limit:
        last = rows[request.limit - 1]
        next_cursor = codec.encode(
            {"q": query_id, "k": [_key_text(getattr(last, c)) for c in columns], "id": last.id.hex}
        )
    return Page(rows[: request.limit], next_cursor)


def _query_fingerprint(request: ListRequest) -> str:
    """What a cursor is bound to: the filters and the sort it was issued for."""
    f = request.filters
    return "|".join(
        str(part)
        for part in (
            "invoices",
            f.client_name_prefix,
            f.status,
            f.due_date,
            request.order_by,
            request.order_dir,
        )
    )


def _key_text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def _key_value(column: str, text: str) -> Any:
    return date.fromisoformat(text) if column == "due_date" else str(text)


def _read_position(position: dict[str, Any], query_id: str, read: Any) -> Any:
    """The position's key, if the cursor was issued for this very query."""
    if position.get("q") != query_id:
        raise InvalidInput("The cursor belongs to a different query", field="cursor")
    try:
        result = read(position)
    except (KeyError, ValueError, TypeError):
        raise InvalidInput("The cursor is not one this API issued", field="cursor") from None
    return result
