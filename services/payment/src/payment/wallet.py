"""The wallet: an owner's prepaid balance per currency, kept as an append-only ledger.

Every change locks the account row first (SELECT ... FOR UPDATE), then checks and writes
under that lock, so concurrent top-ups and fees on one account run one after another and
the balance a fee is checked against is the balance it is taken from. Each change is
identified by its type and reference; the same change asked for twice is applied once and
the first result is returned. These functions stage; the caller commits.
"""

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from common.events import new_event
from common.outbox import add_event, utcnow
from payment import repository
from payment.events import SOURCE, TOPIC, WALLET_CREDITED, WALLET_DEBITED, WalletChanged
from payment.exceptions import DebitNotFound, InsufficientBalance, ReferenceReused
from payment.models import EntryType, OutboxMessage, WalletAccount, WalletEntry


@dataclass(frozen=True)
class Change:
    """A ledger entry and whether this call wrote it (False: it was there already)."""

    entry: WalletEntry
    applied: bool


async def credit(
    session: AsyncSession,
    owner_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    entry_type: EntryType,
    reference: str,
    description: str,
    payment_id: uuid.UUID | None = None,
) -> Change:
    """Add funds, opening the account on its first credit."""
    await repository.create_account_if_missing(session, owner_id, currency, utcnow())
    account = await repository.lock_account(session, owner_id, currency)
    if account is None:  # created just above, and accounts are never deleted
        raise RuntimeError(f"wallet account {owner_id} {currency} vanished")
    existing = await repository.find_entry(session, owner_id, entry_type, reference)
    if existing is not None:
        return Change(existing, applied=False)
    entry = await _append(session, account, entry_type, amount, reference, description, payment_id)
    return Change(entry, applied=True)


async def debit_fee(
    session: AsyncSession,
    owner_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    reference: str,
    description: str,
) -> Change:
    """Take a platform fee; InsufficientBalance when the balance is lower than the fee."""
    # Lock first, look for the reference after: a second request with the same reference
    # waits here and then sees the first one's entry.
    account = await repository.lock_account(session, owner_id, currency)
    existing = await repository.find_entry(session, owner_id, EntryType.FEE, reference)
    if existing is not None:
        if existing.currency != currency or existing.amount != -amount:
            raise ReferenceReused()
        return Change(existing, applied=False)
    if account is None or account.balance < amount:
        raise InsufficientBalance()
    entry = await _append(session, account, EntryType.FEE, -amount, reference, description)
    return Change(entry, applied=True)


async def refund_fee(session: AsyncSession, owner_id: uuid.UUID, reference: str) -> Change:
    """Give a fee back, once; the refund carries the fee's reference."""
    fee = await repository.find_entry(session, owner_id, EntryType.FEE, reference)
    if fee is None:
        raise DebitNotFound()
    account = await repository.lock_account(session, owner_id, fee.currency)
    if account is None:  # the fee was taken from it, and accounts are never deleted
        raise RuntimeError(f"wallet account {owner_id} {fee.currency} vanished")
    existing = await repository.find_entry(session, owner_id, EntryType.REFUND, reference)
    if existing is not None:
        return Change(existing, applied=False)
    description = f"Refund: {fee.description}"[:200]
    entry = await _append(session, account, EntryType.REFUND, -fee.amount, reference, description)
    return Change(entry, applied=True)


async def _append(
    session: AsyncSession,
    account: WalletAccount,
    entry_type: EntryType,
    amount: Decimal,
    reference: str,
    description: str,
    payment_id: uuid.UUID | None = None,
) -> WalletEntry:
    """Write the next entry of a locked account and its event; the account's new balance is
    computed here, under the lock."""
    account.sequence += 1
    account.balance += amount
    entry = WalletEntry(
        account_id=account.id,
        owner_id=account.owner_id,
        currency=account.currency,
        sequence=account.sequence,
        type=entry_type,
        amount=amount,
        balance_after=account.balance,
        reference=reference,
        description=description,
        payment_id=payment_id,
        created_at=utcnow(),
    )
    session.add(entry)
    await session.flush()
    payload = WalletChanged(
        owner_id=account.owner_id,
        transaction_id=entry.id,
        currency=account.currency,
        amount=abs(amount),
        balance_after=account.balance,
        sequence=entry.sequence,
        reference=reference,
    )
    event_type = WALLET_CREDITED if amount > 0 else WALLET_DEBITED
    add_event(
        session, OutboxMessage, TOPIC, new_event(SOURCE, event_type, account.owner_id, payload)
    )
    return entry


async def balances(session: AsyncSession, owner_id: uuid.UUID) -> list[WalletAccount]:
    """The owner's accounts by currency; none until the first top-up."""
    return list(await repository.accounts_of(session, owner_id))
