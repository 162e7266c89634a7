"""Queries of the invoice service. Repositories read and stage; they never commit."""

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Row,
    Select,
    and_,
    bindparam,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from invoice.models import Client, Invoice, InvoiceCounter, InvoiceLine, InvoiceStatus, Owner

INVOICES = Invoice.__table__
CLIENTS = Client.__table__
# An invoice as the listing reads it: a row of the invoices table, its columns by attribute.
# The listing loads plain rows, not ORM objects: a page is read and shown, never changed, and
# building tracked objects cost the API more CPU than the query itself.
InvoiceRow = Row[Any]

# The sort key of each order: the named column, then tie-breakers, then the id. Ties are
# broken by columns that are also in the index, so the order is total and index-backed.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "due_date": ("due_date", "client_name"),
    "status": ("status", "due_date", "client_name"),
    "client_name": ("client_name", "due_date"),
}


@dataclass(frozen=True)
class InvoiceFilter:
    """Seed 000's filters; every field is optional."""

    client_name_prefix: str | None = None
    status: InvoiceStatus | None = None
    due_date: date | None = None


@dataclass(frozen=True)
class ListingShape:
    """What the listing statement depends on besides its values: which filters are set, the
    sort, and whether the page continues after a cursor."""

    order_by: str
    descending: bool
    by_status: bool
    by_due_date: bool
    by_name: bool
    after_cursor: bool


@dataclass(frozen=True)
class Listing:
    """A listing statement and the values it runs with."""

    statement: Select[Any]
    params: dict[str, Any]


def listing_index(order_by: str, filters: InvoiceFilter) -> str:
    """The index whose column order serves this filter and sort without a filesort.

    Equality filters come first in the index, then the sort key; every listing index holds
    client_name, so a client-name prefix can be checked in the index (MariaDB 10.11 does so
    on ascending scans only; descending ones read the row to check it).
    """
    return _index_for(order_by, filters.status is not None, filters.due_date is not None)


def _index_for(order_by: str, by_status: bool, by_due: bool) -> str:
    if by_status and by_due:
        return "ix_invoices_owner_status_due_client"
    if by_due:
        return (
            "ix_invoices_owner_due_status_client"
            if order_by == "status"
            else "ix_invoices_owner_due_client"
        )
    if by_status:
        return (
            "ix_invoices_owner_status_client_due"
            if order_by == "client_name"
            else "ix_invoices_owner_status_due_client"
        )
    return {
        "due_date": "ix_invoices_owner_due_client",
        "status": "ix_invoices_owner_status_due_client",
        "client_name": "ix_invoices_owner_client_due",
    }[order_by]


def sort_columns(order_by: str, filters: InvoiceFilter) -> list[str]:
    """The sort key without the columns an equality filter already fixes."""
    return _sort_columns(order_by, filters.status is not None, filters.due_date is not None)


def _sort_columns(order_by: str, by_status: bool, by_due: bool) -> list[str]:
    fixed = {name for name, set_ in (("status", by_status), ("due_date", by_due)) if set_}
    return [name for name in SORT_KEYS[order_by] if name not in fixed]


def _column(name: str) -> ColumnElement[Any]:
    return INVOICES.c[name]


def _after(columns: list[str], descending: bool) -> ColumnElement[bool]:
    """Rows strictly after the cursor in the sort order, spelled as nested OR/AND so the
    range optimizer turns it into index ranges (row-value comparison is not optimized by
    every MySQL flavour). The cursor's values are bound as `after_0`.. and `after_id`."""
    last_id: BindParameter[Any] = bindparam("after_id")
    beyond = INVOICES.c.id < last_id if descending else INVOICES.c.id > last_id
    for position, name in reversed(list(enumerate(columns))):
        column = _column(name)
        value: BindParameter[Any] = bindparam(f"after_{position}")
        past = column < value if descending else column > value
        beyond = or_(past, and_(column == value, beyond))
    return beyond


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@lru_cache(maxsize=256)
def listing_statement(shape: ListingShape) -> Select[Any]:
    """The listing statement of one shape, with its values as bound parameters.

    There are 96 shapes; building one costs more than the query it runs (SQLAlchemy
    expression objects), so each is built once and reused, and its compiled form stays in
    SQLAlchemy's cache under a key computed once.
    """
    columns = _sort_columns(shape.order_by, shape.by_status, shape.by_due_date)
    conditions: list[ColumnElement[bool]] = [INVOICES.c.owner_id == bindparam("owner_id")]
    if shape.by_status:
        conditions.append(INVOICES.c.status == bindparam("status"))
    if shape.by_due_date:
        conditions.append(INVOICES.c.due_date == bindparam("due_date"))
    if shape.by_name:
        conditions.append(INVOICES.c.client_name.like(bindparam("name_pattern"), escape="\\"))
    if shape.after_cursor:
        conditions.append(_after(columns, shape.descending))
    ordering = [*(_column(name) for name in columns), INVOICES.c.id]
    index = _index_for(shape.order_by, shape.by_status, shape.by_due_date)
    return (
        select(INVOICES)
        .with_hint(INVOICES, f"FORCE INDEX ({index})", "mysql")
        .where(*conditions)
        .order_by(*(c.desc() if shape.descending else c.asc() for c in ordering))
        .limit(bindparam("limit"))
    )


@lru_cache(maxsize=256)
def listing_with_clients_statement(shape: ListingShape) -> Select[Any]:
    """The listing statement with each invoice's client (its name and email now) joined to
    the page, for answers that show them: the page is chosen by the listing's own statement
    and index, then each of its rows finds its client by primary key, in the same round
    trip. The columns are the listing's plus `client_current_name` and `client_email`."""
    page = listing_statement(shape).subquery("page")
    columns = _sort_columns(shape.order_by, shape.by_status, shape.by_due_date)
    ordering = [*(page.c[name] for name in columns), page.c.id]
    return (
        select(
            page,
            CLIENTS.c.name.label("client_current_name"),
            CLIENTS.c.email.label("client_email"),
        )
        .join(CLIENTS, CLIENTS.c.id == page.c.client_id)
        .order_by(*(c.desc() if shape.descending else c.asc() for c in ordering))
    )


def invoice_listing(
    owner_id: uuid.UUID,
    filters: InvoiceFilter,
    order_by: str,
    descending: bool,
    after: tuple[list[Any], uuid.UUID] | None,
    limit: int,
    *,
    with_clients: bool = False,
) -> Listing:
    """The listing query; `after` is the last row's sort key values and id."""
    shape = ListingShape(
        order_by=order_by,
        descending=descending,
        by_status=filters.status is not None,
        by_due_date=filters.due_date is not None,
        by_name=filters.client_name_prefix is not None,
        after_cursor=after is not None,
    )
    params: dict[str, Any] = {"owner_id": owner_id, "limit": limit}
    if filters.status is not None:
        params["status"] = filters.status
    if filters.due_date is not None:
        params["due_date"] = filters.due_date
    if filters.client_name_prefix is not None:
        params["name_pattern"] = escape_like(filters.client_name_prefix) + "%"
    if after is not None:
        values, params["after_id"] = after
        params.update((f"after_{position}", value) for position, value in enumerate(values))
    statement = listing_with_clients_statement(shape) if with_clients else listing_statement(shape)
    return Listing(statement, params)


async def list_invoices(
    session: AsyncSession | AsyncConnection, listing: Listing
) -> Sequence[InvoiceRow]:
    rows: Sequence[InvoiceRow] = (await session.execute(listing.statement, listing.params)).all()
    return rows


async def get_invoice(
    session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID, *, for_update: bool = False
) -> Invoice | None:
    query = select(Invoice).where(Invoice.id == invoice_id, Invoice.owner_id == owner_id)
    if for_update:
        # A locked read is read to be changed: it must see the row as it is now, not the copy
        # an earlier read of the same session left in the identity map.
        query = query.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(query)


async def get_invoice_with_lines(
    session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID
) -> tuple[Invoice, list[InvoiceLine]] | None:
    """The owner's invoice and its lines in one query: a row per line (one row, with no line,
    for an invoice without lines), so the read costs one round trip."""
    rows = (
        await session.execute(
            select(Invoice, InvoiceLine)
            .outerjoin(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
            .where(Invoice.id == invoice_id, Invoice.owner_id == owner_id)
            .order_by(InvoiceLine.position)
        )
    ).all()
    if not rows:
        return None
    return rows[0][0], [row[1] for row in rows if row[1] is not None]


async def get_invoice_and_client(
    session: AsyncSession, owner_id: uuid.UUID, invoice_id: uuid.UUID
) -> tuple[Invoice, Client] | None:
    """The owner's invoice with the client it was sent to, in one query."""
    row = (
        await session.execute(
            select(Invoice, Client)
            .join(Client, Client.id == Invoice.client_id)
            .where(Invoice.id == invoice_id, Invoice.owner_id == owner_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def get_client(
    session: AsyncSession, owner_id: uuid.UUID, client_id: int, *, shared_lock: bool = False
) -> Client | None:
    """The owner's client; with `shared_lock`, read-locked until the transaction ends (what
    inserting an invoice of the client takes anyway, for its foreign key)."""
    query = select(Client).where(Client.id == client_id, Client.owner_id == owner_id)
    if shared_lock:
        query = query.with_for_update(read=True)
    return await session.scalar(query)


async def list_clients(
    session: AsyncSession, owner_id: uuid.UUID, after: tuple[str, int] | None, limit: int
) -> Sequence[Client]:
    """The owner's clients by name, then id."""
    query = select(Client).where(Client.owner_id == owner_id)
    if after is not None:
        name, last_id = after
        query = query.where(or_(Client.name > name, and_(Client.name == name, Client.id > last_id)))
    query = query.order_by(Client.name, Client.id).limit(limit)
    return (await session.scalars(query)).all()


async def pending_past_due(session: AsyncSession, today: date, limit: int) -> Sequence[Invoice]:
    """Pending invoices due before today, locked; rows another worker holds are skipped."""
    query = (
        select(Invoice)
        # Imported invoices are left to their platform, which reports past due itself.
        .where(
            Invoice.status == InvoiceStatus.PENDING,
            Invoice.due_date < today,
            Invoice.source.is_(None),
        )
        .order_by(Invoice.due_date)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def rename_client_on_invoices(session: AsyncSession, client_id: int, name: str) -> None:
    await session.execute(
        update(Invoice)
        .where(Invoice.client_id == client_id)
        .values(client_name=name, version=Invoice.version + 1)
    )


async def owners_deleted_since(session: AsyncSession, since: datetime) -> Sequence[uuid.UUID]:
    return (await session.scalars(select(Owner.id).where(Owner.deleted_at >= since))).all()


async def invoice_lines(session: AsyncSession, invoice_id: uuid.UUID) -> Sequence[InvoiceLine]:
    query = select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)
    return (await session.scalars(query.order_by(InvoiceLine.position))).all()


async def next_invoice_number(session: AsyncSession, owner_id: uuid.UUID) -> int:
    """The owner's next invoice number. The counter's row stays locked until the caller's
    transaction ends, so two invoices created at once get two numbers, one after the other."""
    counting = insert(InvoiceCounter).values(owner_id=owner_id, last_number=1)
    counting = counting.on_duplicate_key_update(last_number=InvoiceCounter.last_number + 1)
    await session.execute(counting)
    # Our own write is what this reads: the row is ours until the transaction ends.
    number = await session.scalar(
        select(InvoiceCounter.last_number).where(InvoiceCounter.owner_id == owner_id)
    )
    return int(number or 0)


@asynccontextmanager
async def named_lock(session: AsyncSession, name: str, timeout_seconds: int) -> AsyncIterator[bool]:
    """A server-wide lock by name (MySQL's GET_LOCK), held by the session's connection: it
    serializes work across processes without holding any row. Yields whether it was got."""
    got = await session.scalar(
        text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": timeout_seconds}
    )
    try:
        yield bool(got)
    finally:
        if got:
            await session.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


async def imported_clients(
    session: AsyncSession, owner_id: uuid.UUID, source: str, external_ids: set[str]
) -> dict[str, Client]:
    """The owner's clients imported from this source, by their platform id; locked."""
    if not external_ids:
        return {}
    rows = await session.scalars(
        select(Client)
        .where(
            Client.owner_id == owner_id,
            Client.source == source,
            Client.external_id.in_(external_ids),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {str(client.external_id): client for client in rows}


async def imported_invoices(
    session: AsyncSession, owner_id: uuid.UUID, source: str, external_ids: set[str]
) -> dict[str, Invoice]:
    """The owner's invoices imported from this source, by their platform id; locked."""
    if not external_ids:
        return {}
    rows = await session.scalars(
        select(Invoice)
        .where(
            Invoice.owner_id == owner_id,
            Invoice.source == source,
            Invoice.external_id.in_(external_ids),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {str(invoice.external_id): invoice for invoice in rows}
