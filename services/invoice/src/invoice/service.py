"""Domain operations of the invoice service. They stage changes and events; the edge commits."""

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from common.errors import InvalidInput
from common.events import new_event
from common.ids import uuid7
from common.logging import get_logger
from common.outbox import add_event, utcnow
from common.pagination import CursorCodec, Page
from common.types import CENT, money_text
from invoice import repository
from invoice.events import (
    INVOICE_CREATED,
    INVOICE_SEND_REQUESTED,
    INVOICE_STATUS_CHANGED,
    SOURCE,
    TOPIC,
    InvoiceCreated,
    InvoiceSendRequested,
    InvoiceStatusChanged,
    Recipient,
    SendFee,
    SentInvoice,
    StoredPdf,
)
from invoice.exceptions import (
    ClientNotFound,
    InvalidLines,
    InvoiceImported,
    InvoiceNotFound,
    InvoiceNotOpen,
    InvoiceNotPayable,
    InvoiceNotSendable,
    PdfBusy,
    UnknownClient,
)
from invoice.models import (
    OPEN_STATUSES,
    Client,
    Invoice,
    InvoiceLine,
    InvoiceSend,
    InvoiceStatus,
    OutboxMessage,
    Owner,
)
from invoice.payments import CardDetails, InvoicePayment, PaymentClient, PaymentMade
from invoice.pdf import (
    DocumentLine,
    InvoiceDocument,
    Party,
    PdfRenderer,
    pdf_filename,
    pdf_key,
    pdf_version,
)
from invoice.repository import InvoiceFilter, InvoiceRow
from invoice.storage import PdfObject

log = get_logger(__name__)


@dataclass(frozen=True)
class NewLine:
    description: str
    quantity: Decimal
    unit_price: Decimal


@dataclass(frozen=True)
class NewInvoice:
    client_id: int
    description: str
    # Without lines, the amount billed; with lines, None or their sum (checked).
    amount: Decimal | None
    currency: str
    due_date: date
    lines: tuple[NewLine, ...] = ()


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
    elif any(getattr(owner, name) != getattr(profile, name) for name in PROFILE_FIELDS):
        # The PDFs' header changes: every invoice of the owner renders anew on next download.
        owner.profile_version += 1
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
    else:
        owner.profile_version += 1
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


# --- invoices ---------------------------------------------------------------------------------


async def create_invoice(
    session: AsyncSession, owner_id: uuid.UUID, new: NewInvoice, *, client_field: str
) -> tuple[Invoice, Client]:
    """Create a pending invoice for one of the owner's clients and announce it."""
    # The client first, then the owner's counter, in the order an import takes them: the
    # invoice's insert locks the client for its foreign key, and taking that after the
    # counter deadlocked with an import holding the client and waiting for the counter.
    client = await repository.get_client(session, owner_id, new.client_id, shared_lock=True)
    if client is None:
        raise UnknownClient(client_field)
    lines = [
        InvoiceLine(
            position=position,
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price.quantize(CENT),
            amount=line_amount(line),
        )
        for position, line in enumerate(new.lines, start=1)
    ]
    amount = _invoice_amount(new, lines)
    number = await repository.next_invoice_number(session, owner_id)
    invoice = Invoice(
        owner_id=owner_id,
        number=invoice_number(number),
        client_id=client.id,
        client_name=client.name,
        description=new.description,
        amount=amount,
        currency=new.currency,
        status=InvoiceStatus.PENDING,
        due_date=new.due_date,
        version=1,
    )
    session.add(invoice)
    await session.flush()
    for line in lines:
        line.invoice_id = invoice.id
    session.add_all(lines)
    await session.flush()
    payload = InvoiceCreated(
        invoice_id=invoice.id,
        number=invoice.number,
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


async def get_invoice_with_lines(
    session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID
) -> tuple[Invoice, list[InvoiceLine]]:
    """The owner's invoice with its lines, read together."""
    found = await repository.get_invoice_with_lines(session, owner_id, invoice_id)
    if found is None:
        raise InvoiceNotFound()
    return found


def invoice_number(number: int) -> str:
    return f"INV-{number:06d}"


def line_amount(line: NewLine) -> Decimal:
    return (line.quantity * line.unit_price).quantize(CENT, rounding=ROUND_HALF_UP)


# The largest amount the invoices table holds (NUMERIC(12, 2)).
MAX_AMOUNT = Decimal("9999999999.99")


def _invoice_amount(new: NewInvoice, lines: list[InvoiceLine]) -> Decimal:
    """The amount billed: the lines' sum when there are lines, and then a given amount must
    agree with it; "1000" and "1000.00" are one amount, stored and answered as "1000.00"."""
    if not lines:
        if new.amount is None:
            raise InvalidInput("Give the amount, or lines to sum up", field="amount")
        return new.amount.quantize(CENT)
    total = sum((line.amount for line in lines), Decimal("0.00"))
    if total > MAX_AMOUNT:
        raise InvalidLines("The lines add up to more than an invoice can hold", field="lines")
    if total <= 0:
        raise InvalidLines("The lines add up to nothing", field="lines")
    if new.amount is not None and new.amount.quantize(CENT) != total:
        raise InvalidLines(
            f"The amount differs from the sum of the lines ({money_text(total)})", field="amount"
        )
    return total


async def invoice_lines(session: AsyncSession, invoice: Invoice) -> list[InvoiceLine]:
    return list(await repository.invoice_lines(session, invoice.id))


async def get_invoice_and_client(
    session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID
) -> tuple[Invoice, Client]:
    """The owner's invoice and its client, read together."""
    found = await repository.get_invoice_and_client(session, owner_id, invoice_id)
    if found is None:
        raise InvoiceNotFound()
    return found


def _change_status(session: AsyncSession, invoice: Invoice, status: InvoiceStatus) -> None:
    previous = invoice.status
    invoice.status = status
    invoice.version += 1
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
    if invoice.source is not None:
        raise InvoiceImported()
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
    # The client's address goes with the charge so the payment's receipt can reach them.
    client = await repository.get_client(session, owner_id, invoice.client_id)
    payment = InvoicePayment(
        invoice_id=invoice.id,
        amount=invoice.amount,
        currency=invoice.currency,
        description=invoice.description,
        card=card,
        number=invoice.number,
        client_email=client.email if client else None,
        client_name=invoice.client_name,
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
    session: AsyncSession | AsyncConnection,
    codec: CursorCodec,
    owner_id: uuid.UUID,
    request: ListRequest,
    *,
    with_clients: bool = False,
) -> Page[InvoiceRow]:
    """One page of the owner's invoices, filtered and sorted, after the cursor's row (a Core
    statement: a session or a bare connection runs it); `with_clients` adds each invoice's
    client's current name and email to its row."""
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
        with_clients=with_clients,
    )
    rows = list(await repository.list_invoices(session, query))
    next_cursor = None
    if len(rows) > request.limit:
        last = rows[request.limit - 1]
        next_cursor = codec.encode(
            {"q": query_id, "k": [_key_text(getattr(last, c)) for c in columns], "id": last.id.hex}
        )
    return Page(rows[: request.limit], next_cursor)


# --- CSV export -------------------------------------------------------------------------------

# Rows read per query of an export: the export walks the listing's index page by page, so a
# large owner's file is never held in memory, and no read connection is held between pages
# while the client is slow to take the bytes.
EXPORT_PAGE_ROWS = 500
EXPORT_COLUMNS = (
    "number",
    "client_name",
    "description",
    "amount",
    "currency",
    "status",
    "due_date",
    "created_at",
    "source",
    "external_number",
    "id",
)
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's CSV
# injection): such a cell is written with a leading apostrophe, which shows it as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


async def export_invoices(
    engine: AsyncEngine,
    owner_id: uuid.UUID,
    filters: InvoiceFilter,
    order_by: str,
    descending: bool,
    page_rows: int = EXPORT_PAGE_ROWS,
) -> AsyncIterator[InvoiceRow]:
    """Every invoice of the owner that the listing with these filters and sort shows, in its
    order, read in keyset pages of `page_rows`, each on a read connection of its own."""
    columns = repository.sort_columns(order_by, filters)
    after: tuple[list[Any], uuid.UUID] | None = None
    while True:
        query = repository.invoice_listing(
            owner_id, filters, order_by, descending, after, page_rows
        )
        async with engine.connect() as connection:
            rows = await repository.list_invoices(connection, query)
        for row in rows:
            yield row
        if len(rows) < page_rows:
            return
        last = rows[-1]
        after = ([getattr(last, column) for column in columns], last.id)


def csv_cell(value: Any) -> str:
    """A value as the export writes it: dates in ISO 8601, instants in UTC, no formulas."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    elif isinstance(value, Decimal):
        text = money_text(value)
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


async def invoices_csv(rows: AsyncIterator[InvoiceRow]) -> AsyncIterator[bytes]:
    """The rows as CSV (RFC 4180, UTF-8 with a byte order mark so that spreadsheets read
    accents right), a header row first, one chunk per page of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield ("\ufeff" + buffer.getvalue()).encode()
    buffer.seek(0)
    buffer.truncate()
    pending = 0
    async for row in rows:
        writer.writerow([csv_cell(getattr(row, column)) for column in EXPORT_COLUMNS])
        pending += 1
        if pending == EXPORT_PAGE_ROWS:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue().encode()


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


# --- PDFs -------------------------------------------------------------------------------------

# How long a request waits for another process rendering the same invoice.
RENDER_WAIT_SECONDS = 30


@dataclass(frozen=True)
class PdfLocation:
    """Where the PDF of the invoice as it is now is (or will be) stored."""

    invoice: Invoice
    owner: Owner | None
    key: str
    filename: str


def _address(owner: Owner) -> tuple[str, ...]:
    place = " ".join(part for part in (owner.postal_code, owner.city) if part)
    parts = (owner.address_line1, owner.address_line2, place, owner.region, owner.country)
    return tuple(part for part in parts if part)


async def locate_pdf(
    session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID, *, for_update: bool = False
) -> PdfLocation:
    """The key of the owner's invoice's PDF at its current version; 404 like the invoice."""
    invoice = await repository.get_invoice(session, owner_id, invoice_id, for_update=for_update)
    if invoice is None:
        raise InvoiceNotFound()
    owner = await session.get(Owner, owner_id)
    # An owner whose profile has not arrived yet has version 0: its arrival renders anew.
    version = pdf_version(invoice.version, owner.profile_version if owner else 0)
    return PdfLocation(
        invoice=invoice,
        owner=owner,
        key=pdf_key(owner_id, invoice.id, version),
        filename=pdf_filename(invoice.number),
    )


async def invoice_document(session: AsyncSession, location: PdfLocation) -> InvoiceDocument:
    invoice, owner = location.invoice, location.owner
    client = await repository.get_client(session, invoice.owner_id, invoice.client_id)
    lines = await invoice_lines(session, invoice)
    shown = [
        DocumentLine(line.description, line.quantity, line.unit_price, line.amount)
        for line in lines
    ] or [DocumentLine(invoice.description, Decimal(1), invoice.amount, invoice.amount)]
    seller = (
        Party(owner.name, owner.company_name, _address(owner), owner.email)
        if owner is not None
        else Party(None)
    )
    return InvoiceDocument(
        number=invoice.number,
        status=InvoiceStatus(invoice.status),
        issue_date=invoice.created_at.date(),
        due_date=invoice.due_date,
        currency=invoice.currency,
        total=invoice.amount,
        seller=seller,
        # The client's current name is on the invoice row; its email from the client.
        client=Party(invoice.client_name, email=client.email if client else None),
        lines=tuple(shown),
    )


async def ensure_pdf(
    session: AsyncSession, renderer: PdfRenderer, location: PdfLocation
) -> PdfObject:
    """The stored PDF of this version, rendered and stored first if it is not yet.

    One version is rendered once: in this process the renderer's lock per key makes a second
    request wait for the first; across processes a named database lock does the same, and
    whoever gets it second finds the PDF stored.
    """
    stored = await renderer.store.head(location.key)
    if stored is not None:
        return stored
    document = await invoice_document(session, location)
    async with renderer.key_lock(location.key):
        lock_name = f"invoice-pdf:{location.invoice.id.hex}"
        async with repository.named_lock(session, lock_name, RENDER_WAIT_SECONDS) as got:
            if not got:
                raise PdfBusy()
            return await renderer.render_into_store(location.key, document)


@dataclass(frozen=True)
class PdfDownload:
    """A stored PDF to send, or None as `chunks` when the client's copy is current (304)."""

    stored: PdfObject
    filename: str
    chunks: AsyncIterator[bytes] | None


async def download_pdf(
    session: AsyncSession,
    renderer: PdfRenderer,
    owner_id: uuid.UUID,
    invoice_id: uuid.UUID,
    if_none_match: str | None,
) -> PdfDownload:
    """The invoice's PDF as it is now, rendered on first request of each version."""
    location = await locate_pdf(session, owner_id, invoice_id)
    if if_none_match:
        stored = await renderer.store.head(location.key)
        if stored is not None and etag_matches(if_none_match, stored.etag):
            return PdfDownload(stored, location.filename, None)
    found = await renderer.store.read(location.key)
    if found is None:
        await ensure_pdf(session, renderer, location)
        found = await renderer.store.read(location.key)
        if found is None:  # deleted from the bucket in between: nothing sane to do but retry
            raise PdfBusy()
    stored, chunks = found
    if if_none_match and etag_matches(if_none_match, stored.etag):
        return PdfDownload(stored, location.filename, None)
    return PdfDownload(stored, location.filename, chunks)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison of If-None-Match's list (or `*`) with the ETag."""
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))


# --- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    to: str | None
    message: str | None
    fee_amount: Decimal
    fee_currency: str


async def send_invoice(
    session: AsyncSession,
    renderer: PdfRenderer,
    payments: PaymentClient,
    access_token: str,
    owner_id: uuid.UUID,
    invoice_id: uuid.UUID,
    request: SendRequest,
) -> InvoiceSend:
    """Email the invoice: its PDF stored, the fee taken, then the send and its event
    committed together. Commits itself, unlike the other operations: when the commit fails
    after the fee was taken, the fee is given back before the error reaches the user.

    The invoice's row is locked from before the fee is taken until the commit, so it cannot
    be voided (or change) between the check and the send.
    """
    location = await locate_pdf(session, owner_id, invoice_id, for_update=True)
    invoice = location.invoice
    if invoice.status == InvoiceStatus.VOID:
        raise InvoiceNotSendable(invoice.status)
    stored = await ensure_pdf(session, renderer, location)
    client = await repository.get_client(session, owner_id, invoice.client_id)
    owner = location.owner
    sender_name = (owner and (owner.company_name or owner.name or owner.email)) or "Ledgerline"
    send = InvoiceSend(
        id=uuid7(),
        owner_id=owner_id,
        invoice_id=invoice.id,
        recipient_email=request.to or (client.email if client else ""),
        message=request.message,
        pdf_key=stored.key,
        fee_amount=request.fee_amount.quantize(CENT),
        fee_currency=request.fee_currency,
        created_at=utcnow(),
    )
    send.fee_reference = f"invoice-send:{send.id}"
    await payments.debit_fee(
        access_token,
        send.fee_reference,
        send.fee_amount,
        send.fee_currency,
        f"Emailing invoice {invoice.number}",
    )
    try:
        session.add(send)
        payload = InvoiceSendRequested(
            send_id=send.id,
            invoice_id=invoice.id,
            owner_id=owner_id,
            recipient=Recipient(email=send.recipient_email, name=invoice.client_name),
            reply_to=owner.email if owner else None,
            sender_name=sender_name,
            subject=f"Invoice {invoice.number} from {sender_name}",
            message=send.message,
            invoice=SentInvoice(
                number=invoice.number,
                description=invoice.description,
                amount=money_text(invoice.amount),
                currency=invoice.currency,
                due_date=invoice.due_date,
                status=invoice.status,
                client_name=invoice.client_name,
            ),
            pdf=StoredPdf(
                bucket=renderer.store.bucket,
                key=stored.key,
                etag=stored.etag,
                filename=location.filename,
                size=stored.size,
            ),
            fee=SendFee(
                reference=send.fee_reference,
                amount=money_text(send.fee_amount),
                currency=send.fee_currency,
            ),
            requested_at=send.created_at.replace(tzinfo=UTC),
        )
        add_event(
            session,
            OutboxMessage,
            TOPIC,
            new_event(SOURCE, INVOICE_SEND_REQUESTED, owner_id, payload),
        )
        await session.commit()
    except BaseException:
        # Nothing was recorded: the fee goes back (compensation), and the user may try again.
        await session.rollback()
        await payments.refund_fee(access_token, send.fee_reference)
        raise
    log.info("invoice_send_requested", send_id=str(send.id), invoice_id=str(invoice.id))
    return send


# --- imported from a billing platform (the sync service) ---------------------------------------


@dataclass(frozen=True)
class ImportedClient:
    external_id: str
    name: str
    email: str


@dataclass(frozen=True)
class ImportedInvoice:
    external_id: str
    number: str
    client_external_id: str
    description: str
    amount: Decimal
    currency: str
    status: InvoiceStatus
    due_date: date
    issued_at: datetime
    removed: bool


@dataclass(frozen=True)
class ImportBatch:
    owner_id: uuid.UUID
    source: str
    clients: list[ImportedClient]
    invoices: list[ImportedInvoice]


async def apply_import(session: AsyncSession, batch: ImportBatch) -> None:
    """Upsert one page of imported clients and invoices by (owner, source, platform id).

    Applying the same batch twice changes nothing. A status the platform reports anew is
    applied (and announced like any status change), except that an invoice paid here stays
    paid while the platform still says it is open. An invoice the platform no longer lists
    is kept, marked `removed_upstream_at`, and voided if it was still open, so nobody chases
    or charges it. Imported invoices are announced with `invoice.created` like any other.
    """
    owner_id, source = batch.owner_id, batch.source
    wanted = {c.external_id for c in batch.clients} | {i.client_external_id for i in batch.invoices}
    clients = await repository.imported_clients(session, owner_id, source, wanted)
    for imported in batch.clients:
        client = clients.get(imported.external_id)
        if client is None:
            client = Client(
                owner_id=owner_id,
                name=imported.name,
                email=imported.email,
                source=source,
                external_id=imported.external_id,
            )
            session.add(client)
            clients[imported.external_id] = client
        elif (client.name, client.email) != (imported.name, imported.email):
            if client.name != imported.name:
                await repository.rename_client_on_invoices(session, client.id, imported.name)
            client.name, client.email = imported.name, imported.email
    await session.flush()

    ids = {i.external_id for i in batch.invoices}
    invoices = await repository.imported_invoices(session, owner_id, source, ids)
    for imported_invoice in batch.invoices:
        invoice = invoices.get(imported_invoice.external_id)
        if invoice is None:
            created = await _create_imported(session, batch, imported_invoice, clients)
            if created is not None:
                invoices[imported_invoice.external_id] = created
        else:
            _update_imported(session, invoice, imported_invoice, clients)
    await session.flush()


async def _create_imported(
    session: AsyncSession,
    batch: ImportBatch,
    imported: ImportedInvoice,
    clients: dict[str, Client],
) -> Invoice | None:
    client = clients.get(imported.client_external_id)
    if imported.removed or client is None:
        if client is None:
            log.warning("imported_invoice_without_client", external_id=imported.external_id)
        return None
    # The owner's own running number, like any invoice here; the platform's stays beside it.
    number = await repository.next_invoice_number(session, batch.owner_id)
    invoice = Invoice(
        id=uuid7(),
        owner_id=batch.owner_id,
        number=invoice_number(number),
        version=1,
        client_id=client.id,
        client_name=client.name,
        description=imported.description,
        amount=imported.amount.quantize(CENT),
        currency=imported.currency,
        status=imported.status,
        due_date=imported.due_date,
        source=batch.source,
        external_id=imported.external_id,
        external_number=imported.number,
        external_status=imported.status,
        issued_at=imported.issued_at.astimezone(UTC).replace(tzinfo=None),
    )
    session.add(invoice)
    payload = InvoiceCreated(
        invoice_id=invoice.id,
        number=invoice.number,
        client_id=client.id,
        client_name=client.name,
        client_email=client.email,
        description=invoice.description,
        amount=invoice.amount,
        currency=invoice.currency,
        status=invoice.status,
        due_date=invoice.due_date,
    )
    event = new_event(SOURCE, INVOICE_CREATED, batch.owner_id, payload)
    add_event(session, OutboxMessage, TOPIC, event)
    return invoice


def _update_imported(
    session: AsyncSession, invoice: Invoice, imported: ImportedInvoice, clients: dict[str, Client]
) -> None:
    client = clients.get(imported.client_external_id)
    shown = (
        invoice.client_id,
        invoice.description,
        invoice.amount,
        invoice.currency,
        invoice.due_date,
    )
    if client is not None and client.id != invoice.client_id:
        invoice.client_id, invoice.client_name = client.id, client.name
    invoice.description = imported.description
    invoice.amount = imported.amount.quantize(CENT)
    invoice.currency = imported.currency
    invoice.due_date = imported.due_date
    if shown != (
        invoice.client_id,
        invoice.description,
        invoice.amount,
        invoice.currency,
        invoice.due_date,
    ):
        invoice.version += 1  # what its PDF shows changed: it renders anew
    invoice.external_number = imported.number
    if imported.removed:
        if invoice.removed_upstream_at is None:
            invoice.removed_upstream_at = utcnow()
            if invoice.status in OPEN_STATUSES:
                _change_status(session, invoice, InvoiceStatus.VOID)
        return
    if imported.status == invoice.external_status:
        return  # the platform said nothing new; a local change (paid here) stands
    invoice.external_status = imported.status
    if invoice.status == InvoiceStatus.PAID and imported.status in OPEN_STATUSES:
        log.info("imported_status_kept_paid", invoice_id=str(invoice.id))
        return
    if invoice.status != imported.status:
        _change_status(session, invoice, imported.status)
