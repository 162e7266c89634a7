"""Queries of the payment service. Repositories read and stage; they never commit."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from payment.models import (
    UNSETTLED_STATUSES,
    BillingRun,
    BillingRunItem,
    ClosedAccount,
    InvoiceCopy,
    Payment,
    PaymentKind,
    PaymentMethod,
    WalletAccount,
    WalletEntry,
)

# --- payments ---------------------------------------------------------------------------------


async def get_payment(
    session: AsyncSession, owner_id: uuid.UUID, payment_id: uuid.UUID
) -> Payment | None:
    return await session.scalar(
        select(Payment).where(Payment.id == payment_id, Payment.owner_id == owner_id)
    )


async def lock_payment(session: AsyncSession, payment_id: uuid.UUID) -> Payment | None:
    """The payment, locked until the transaction ends, read fresh from the database."""
    return await session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def payment_holding_invoice(session: AsyncSession, invoice_id: uuid.UUID) -> Payment | None:
    """The payment in flight or succeeded for this invoice, if any (at most one exists)."""
    return await session.scalar(select(Payment).where(Payment.active_invoice_id == invoice_id))


async def topup_holding_key(
    session: AsyncSession, owner_id: uuid.UUID, key: bytes
) -> Payment | None:
    """The owner's top-up in flight or succeeded under this Idempotency-Key (at most one)."""
    return await session.scalar(
        select(Payment).where(Payment.owner_id == owner_id, Payment.active_topup_key == key)
    )


async def list_payments(
    session: AsyncSession, owner_id: uuid.UUID, before_id: uuid.UUID | None, limit: int
) -> Sequence[Payment]:
    """The owner's payments, newest first (ids are time-ordered)."""
    query = select(Payment).where(Payment.owner_id == owner_id)
    if before_id is not None:
        query = query.where(Payment.id < before_id)
    return (await session.scalars(query.order_by(Payment.id.desc()).limit(limit))).all()


async def unsettled_payments(
    session: AsyncSession, created_before: datetime, limit: int
) -> Sequence[Payment]:
    """Attempts still processing or unknown that were started before the given time.

    Not the billing run's: the run settles its own attempts when it resumes them.
    """
    query = (
        select(Payment)
        .where(
            Payment.status.in_(UNSETTLED_STATUSES),
            Payment.created_at < created_before,
            Payment.kind != PaymentKind.AUTOPAY,
        )
        .order_by(Payment.created_at)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


# --- wallet -----------------------------------------------------------------------------------


async def lock_account(
    session: AsyncSession, owner_id: uuid.UUID, currency: str
) -> WalletAccount | None:
    """The owner's account in this currency, locked until the transaction ends."""
    return await session.scalar(
        select(WalletAccount)
        .where(WalletAccount.owner_id == owner_id, WalletAccount.currency == currency)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def create_account_if_missing(
    session: AsyncSession, owner_id: uuid.UUID, currency: str, now: datetime
) -> None:
    """An empty account, unless one exists; two first top-ups at once both succeed."""
    statement = insert(WalletAccount).values(
        owner_id=owner_id,
        currency=currency,
        balance=0,
        sequence=0,
        created_at=now,
        updated_at=now,
    )
    # On a duplicate the row is left as it is (the assignment changes nothing).
    await session.execute(statement.on_duplicate_key_update(sequence=WalletAccount.sequence))


async def find_entry(
    session: AsyncSession, owner_id: uuid.UUID, entry_type: str, reference: str
) -> WalletEntry | None:
    return await session.scalar(
        select(WalletEntry).where(
            WalletEntry.owner_id == owner_id,
            WalletEntry.type == entry_type,
            WalletEntry.reference == reference,
        )
    )


async def accounts_of(session: AsyncSession, owner_id: uuid.UUID) -> Sequence[WalletAccount]:
    query = select(WalletAccount).where(WalletAccount.owner_id == owner_id)
    return (await session.scalars(query.order_by(WalletAccount.currency))).all()


async def list_entries(
    session: AsyncSession, owner_id: uuid.UUID, before_id: int | None, limit: int
) -> Sequence[WalletEntry]:
    """The owner's ledger entries in every currency, newest first."""
    query = select(WalletEntry).where(WalletEntry.owner_id == owner_id)
    if before_id is not None:
        query = query.where(WalletEntry.id < before_id)
    return (await session.scalars(query.order_by(WalletEntry.id.desc()).limit(limit))).all()


# --- closed accounts --------------------------------------------------------------------------


async def add_closed_account(
    session: AsyncSession, owner_id: uuid.UUID, deleted_at: datetime
) -> None:
    """The deletion, unless one is recorded already: the first one's time is kept."""
    statement = insert(ClosedAccount).values(owner_id=owner_id, deleted_at=deleted_at)
    # On a duplicate the row is left as it is (the assignment changes nothing).
    await session.execute(statement.on_duplicate_key_update(owner_id=ClosedAccount.owner_id))


async def accounts_deleted_since(session: AsyncSession, since: datetime) -> Sequence[uuid.UUID]:
    return (
        await session.scalars(
            select(ClosedAccount.owner_id).where(ClosedAccount.deleted_at >= since)
        )
    ).all()


# --- payment methods --------------------------------------------------------------------------


async def get_payment_method(
    session: AsyncSession, owner_id: uuid.UUID, method_id: uuid.UUID
) -> PaymentMethod | None:
    return await session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.id == method_id, PaymentMethod.owner_id == owner_id
        )
    )


async def list_payment_methods(
    session: AsyncSession,
    owner_id: uuid.UUID,
    client_id: int | None,
    before: uuid.UUID | None,
    limit: int,
) -> Sequence[PaymentMethod]:
    """The owner's methods, newest first, optionally of one client, after a cursor's id."""
    query = select(PaymentMethod).where(PaymentMethod.owner_id == owner_id)
    if client_id is not None:
        query = query.where(PaymentMethod.client_id == client_id)
    if before is not None:
        query = query.where(PaymentMethod.id < before)
    return (await session.scalars(query.order_by(PaymentMethod.id.desc()).limit(limit))).all()


# --- invoices (the copy from invoice.events) --------------------------------------------------


async def upsert_invoice(session: AsyncSession, values: dict[str, object]) -> None:
    """Insert the invoice's copy or overwrite it with the newer values."""
    statement = insert(InvoiceCopy).values(**values)
    updates = {key: statement.inserted[key] for key in values if key != "invoice_id"}
    await session.execute(statement.on_duplicate_key_update(**updates))


# --- billing runs -----------------------------------------------------------------------------


async def list_runs(
    session: AsyncSession, before: uuid.UUID | None, limit: int
) -> Sequence[BillingRun]:
    query = select(BillingRun)
    if before is not None:
        query = query.where(BillingRun.id < before)
    return (await session.scalars(query.order_by(BillingRun.id.desc()).limit(limit))).all()


async def list_run_items(
    session: AsyncSession,
    run_id: uuid.UUID,
    owner_id: uuid.UUID | None,
    after: int | None,
    limit: int,
) -> Sequence[BillingRunItem]:
    """A run's items in id order, only the owner's when one is given."""
    query = select(BillingRunItem).where(BillingRunItem.run_id == run_id)
    if owner_id is not None:
        query = query.where(BillingRunItem.owner_id == owner_id)
    if after is not None:
        query = query.where(BillingRunItem.id > after)
    return (await session.scalars(query.order_by(BillingRunItem.id).limit(limit))).all()
