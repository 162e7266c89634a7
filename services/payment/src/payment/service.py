"""Card payments: an invoice paid by card, a wallet topped up by card, and the settling of
attempts whose outcome was lost.

A charge is two transactions around the provider call, which runs in neither:

1. the attempt is written as `processing` and committed; for an invoice it takes the
   invoice's slot (`active_invoice_id`, unique), and for a top-up sent with an
   Idempotency-Key the key's (`active_topup_key`, unique per owner), so a concurrent second
   attempt fails on insert and nothing is sent for it;
2. the provider is called, within the provider timeout;
3. the outcome is written with its event through the outbox: succeeded, or failed (which
   frees the invoice or the key), or `unknown` when no trustworthy answer came back.

An attempt left `processing` or `unknown` (a timeout, a 5xx, a process killed between the
provider's acceptance and our commit) is settled by asking the provider whether it holds a
charge with the attempt's transaction id: before any new attempt on that invoice (or under
that key), and by the worker's schedule. Found means succeeded. Not found means "never
charged" only once the attempt is older than the provider timeout plus a grace period, when
no request can still be on its way; until then the invoice (or key) stays held.

These functions open their own transactions (unlike the rest of the codebase, where the
edge commits) because the attempt must be committed before the provider is called.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.errors import InvalidInput
from common.events import new_event
from common.ids import uuid7
from common.logging import get_logger
from common.outbox import add_event, utcnow
from common.pagination import CursorCodec, Page
from payment import repository, wallet
from payment.config import PaymentSettings
from payment.events import (
    PAYMENT_FAILED,
    PAYMENT_SUCCEEDED,
    SOURCE,
    TOPIC,
    PaymentFailed,
    PaymentSucceeded,
)
from payment.exceptions import (
    CardDeclined,
    CardRejected,
    InvoiceHeldByAnotherOwner,
    PaymentInProgress,
    PaymentNotFound,
    ProviderUnavailable,
    TopupInProgress,
    TopupKeyReused,
    TopupTooLarge,
    UnsupportedCurrency,
)
from payment.models import (
    UNSETTLED_STATUSES,
    EntryType,
    OutboxMessage,
    Payment,
    PaymentKind,
    PaymentStatus,
    WalletEntry,
)
from payment.providers import (
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    Outcome,
    PaymentProvider,
    ProviderUnreachable,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class Charging:
    """What charging a card needs: sessions to commit with, the provider, its timings."""

    sessionmaker: async_sessionmaker[AsyncSession]
    provider: PaymentProvider
    settings: PaymentSettings


@dataclass(frozen=True)
class InvoiceCharge:
    invoice_id: uuid.UUID
    amount: Decimal
    currency: str
    description: str
    card: CardDetails
    # For the receipt, when the invoice service sends them.
    client_email: str | None = None
    client_name: str | None = None
    invoice_number: str | None = None


@dataclass(frozen=True)
class PaymentResult:
    """A payment and whether this call made it (False: the invoice was already paid)."""

    payment: Payment
    created: bool


@dataclass(frozen=True)
class Topup:
    payment: Payment
    entry: WalletEntry


# --- paying an invoice ------------------------------------------------------------------------


async def pay_invoice(
    charging: Charging, owner_id: uuid.UUID, charge: InvoiceCharge
) -> PaymentResult:
    """Charge the card for the invoice, unless a payment already holds it.

    Already paid: that payment, created=False. A payment in flight: PaymentInProgress. An
    earlier attempt with a lost outcome is settled with the provider first.
    """
    # Twice at most: a settled earlier attempt that failed frees the invoice for ours.
    for _ in range(2):
        async with charging.sessionmaker() as session:
            holder = await repository.payment_holding_invoice(session, charge.invoice_id)
            if holder is None:
                payment = _new_payment(
                    owner_id,
                    PaymentKind.INVOICE,
                    charge.amount,
                    charge.currency,
                    charge.description,
                    charge.card,
                    charging.provider.name,
                    invoice_id=charge.invoice_id,
                )
                payment.client_email = charge.client_email
                payment.client_name = charge.client_name
                payment.invoice_number = charge.invoice_number
                session.add(payment)
                try:
                    await session.commit()
                except IntegrityError:
                    # Another attempt took the invoice between our read and our insert.
                    raise PaymentInProgress() from None
                log.info("payment_started", payment_id=str(payment.id), kind=payment.kind)
                return PaymentResult(await _charge(charging, payment, charge.card), created=True)

        if holder.owner_id != owner_id:
            raise InvoiceHeldByAnotherOwner()
        if holder.status == PaymentStatus.SUCCEEDED:
            return PaymentResult(holder, created=False)
        if holder.kind == PaymentKind.AUTOPAY:
            # The billing run is charging the saved card; it settles its own attempts.
            raise PaymentInProgress(charging.settings.retry_after_seconds)
        if holder.status == PaymentStatus.PROCESSING and not _settled(charging, holder):
            # Its request is still within the provider timeout: it will record the outcome.
            raise PaymentInProgress(_seconds_to_settle(charging, holder))
        settled = await _settle_or_unavailable(charging, holder.id)
        if settled.status == PaymentStatus.SUCCEEDED:
            return PaymentResult(settled, created=False)
        if settled.status != PaymentStatus.FAILED:
            raise PaymentInProgress(_seconds_to_settle(charging, settled))
    raise PaymentInProgress()


async def top_up(
    charging: Charging,
    owner_id: uuid.UUID,
    amount: Decimal,
    currency: str,
    card: CardDetails,
    key: bytes | None = None,
) -> Topup:
    """Charge the card and credit the owner's wallet with the amount.

    With the client's Idempotency-Key, at most one charge per key: a top-up already made
    under it is answered as it is, after settling it with the provider if its outcome was
    lost. The key's middleware answers most retries itself, but not one that runs again
    after a crash between this top-up's commit and the stored answer.
    """
    if currency not in charging.settings.wallet_currency_set:
        raise UnsupportedCurrency()
    if amount > charging.settings.topup_max_amount:
        raise TopupTooLarge(str(charging.settings.topup_max_amount))
    # Twice at most: an earlier attempt under the key that failed frees the key for ours.
    for _ in range(2):
        if key is not None:
            async with charging.sessionmaker() as session:
                holder = await repository.topup_holding_key(session, owner_id, key)
            if holder is not None:
                earlier = await _earlier_topup(charging, holder, amount, currency, card)
                if earlier is not None:
                    return earlier
                continue
        payment = _new_payment(
            owner_id,
            PaymentKind.TOPUP,
            amount,
            currency,
            "Wallet top-up",
            card,
            charging.provider.name,
            topup_key=key,
        )
        try:
            async with charging.sessionmaker() as session, session.begin():
                session.add(payment)
        except IntegrityError:
            if key is None:
                raise
            continue  # another request with this key started its top-up first: look at it
        log.info("payment_started", payment_id=str(payment.id), kind=payment.kind)
        return await _topup_of(charging, await _charge(charging, payment, card))
    raise TopupInProgress(charging.settings.retry_after_seconds)


async def _earlier_topup(
    charging: Charging, holder: Payment, amount: Decimal, currency: str, card: CardDetails
) -> Topup | None:
    """The top-up already made under the key, settled with the provider first when its
    outcome was lost; None when it failed, so nothing was charged and a new attempt may be."""
    asked = (amount, currency, card.masked_number, card.expiry, card.name)
    made = (
        holder.amount,
        holder.currency,
        holder.card_number_masked,
        holder.card_expiry,
        holder.card_name,
    )
    if asked != made:
        raise TopupKeyReused()
    if holder.status == PaymentStatus.SUCCEEDED:
        return await _topup_of(charging, holder)
    if holder.status == PaymentStatus.PROCESSING and not _settled(charging, holder):
        # Its request is still within the provider timeout: it will record the outcome.
        raise TopupInProgress(_seconds_to_settle(charging, holder), holder.id)
    settled = await _settle_or_unavailable(charging, holder.id)
    if settled.status == PaymentStatus.SUCCEEDED:
        return await _topup_of(charging, settled)
    if settled.status == PaymentStatus.FAILED:
        return None
    raise TopupInProgress(_seconds_to_settle(charging, settled), settled.id)


async def _topup_of(charging: Charging, payment: Payment) -> Topup:
    """A succeeded top-up with the ledger entry it credited."""
    async with charging.sessionmaker() as session:
        entry = await repository.find_entry(
            session, payment.owner_id, EntryType.TOPUP, str(payment.id)
        )
    if entry is None:
        raise RuntimeError(f"top-up {payment.id} succeeded without its ledger entry")
    return Topup(payment, entry)


def _new_payment(
    owner_id: uuid.UUID,
    kind: PaymentKind,
    amount: Decimal,
    currency: str,
    description: str,
    card: CardDetails,
    provider: str,
    invoice_id: uuid.UUID | None = None,
    topup_key: bytes | None = None,
) -> Payment:
    payment_id = uuid7()
    now = utcnow()
    return Payment(
        id=payment_id,
        owner_id=owner_id,
        kind=kind,
        invoice_id=invoice_id,
        active_invoice_id=invoice_id,
        active_topup_key=topup_key,
        status=PaymentStatus.PROCESSING,
        amount=amount,
        currency=currency,
        description=description,
        provider=provider,
        # Seed 001: the provider's transactionId of an invoice's charge is the invoice id.
        transaction_id=str(invoice_id or payment_id),
        card_number_masked=card.masked_number,
        card_last4=card.last4,
        card_expiry=card.expiry,
        card_name=card.name,
        created_at=now,
        updated_at=now,
    )


async def _charge(charging: Charging, payment: Payment, card: CardDetails) -> Payment:
    """Call the provider for a committed attempt and record what it answered."""
    outcome = await charging.provider.charge(
        ChargeRequest(payment.transaction_id, payment.amount, payment.currency, card)
    )
    async with charging.sessionmaker() as session, session.begin():
        current = await repository.lock_payment(session, payment.id)
        if current is None:  # payments are never deleted
            raise RuntimeError(f"payment {payment.id} vanished")
        if current.status in UNSETTLED_STATUSES:
            await _record(session, current, outcome)
        elif outcome.outcome == Outcome.SUCCEEDED and current.status == PaymentStatus.FAILED:
            # Only possible when this process stalled past the grace period and the attempt
            # was settled as not charged meanwhile: the money was taken and must be returned.
            current.provider_charge_id = outcome.charge_id
            log.error("charge_after_settlement", payment_id=str(current.id))
    if current.status == PaymentStatus.SUCCEEDED:
        return current
    if current.status == PaymentStatus.FAILED and outcome.outcome == Outcome.DECLINED:
        raise CardDeclined(current.failure_code or "declined", current.id)
    if current.status == PaymentStatus.FAILED and outcome.outcome == Outcome.REJECTED:
        raise CardRejected(
            current.failure_code or "invalid_card", outcome.field or "card", current.id
        )
    raise ProviderUnavailable(charging.settings.retry_after_seconds, current.id)


async def _record(session: AsyncSession, payment: Payment, outcome: ChargeOutcome) -> None:
    if outcome.outcome == Outcome.SUCCEEDED:
        await _succeed(session, payment, outcome.charge_id)
    elif outcome.outcome == Outcome.UNKNOWN:
        payment.status = PaymentStatus.UNKNOWN
        log.warning("payment_outcome_unknown", payment_id=str(payment.id))
    else:
        _fail(session, payment, outcome.failure_code or outcome.outcome.value)


async def _succeed(session: AsyncSession, payment: Payment, charge_id: str | None) -> None:
    payment.status = PaymentStatus.SUCCEEDED
    payment.provider_charge_id = charge_id
    payment.updated_at = utcnow()
    payload = PaymentSucceeded(
        payment_id=payment.id,
        invoice_id=payment.invoice_id,
        owner_id=payment.owner_id,
        amount=payment.amount,
        currency=payment.currency,
        kind=PaymentKind(payment.kind),
        card_last4=payment.card_last4,
        occurred_at=payment.updated_at,
        client_email=payment.client_email,
        client_name=payment.client_name,
        invoice_number=payment.invoice_number,
    )
    add_event(
        session,
        OutboxMessage,
        TOPIC,
        new_event(SOURCE, PAYMENT_SUCCEEDED, payment.owner_id, payload),
    )
    if payment.kind == PaymentKind.TOPUP:
        await wallet.credit(
            session,
            payment.owner_id,
            payment.currency,
            payment.amount,
            EntryType.TOPUP,
            reference=str(payment.id),
            description=f"Top-up by card ending {payment.card_last4}",
            payment_id=payment.id,
        )
    log.info("payment_succeeded", payment_id=str(payment.id), kind=payment.kind)


def _fail(session: AsyncSession, payment: Payment, failure_code: str) -> None:
    """Record that nothing was charged, and free the invoice, or the top-up's key, for
    another attempt."""
    payment.status = PaymentStatus.FAILED
    payment.failure_code = failure_code
    payment.active_invoice_id = None
    payment.active_topup_key = None
    payment.updated_at = utcnow()
    payload = PaymentFailed(
        payment_id=payment.id,
        invoice_id=payment.invoice_id,
        owner_id=payment.owner_id,
        amount=payment.amount,
        currency=payment.currency,
        kind=PaymentKind(payment.kind),
        card_last4=payment.card_last4,
        failure_code=failure_code,
        occurred_at=payment.updated_at,
    )
    add_event(
        session, OutboxMessage, TOPIC, new_event(SOURCE, PAYMENT_FAILED, payment.owner_id, payload)
    )
    log.info("payment_failed", payment_id=str(payment.id), failure_code=failure_code)


# --- settling lost outcomes -------------------------------------------------------------------


def _settled(charging: Charging, payment: Payment, now: datetime | None = None) -> bool:
    """True when no request of ours, nor the provider, can still be working on the attempt."""
    age = (now or utcnow()) - payment.created_at
    return age >= timedelta(seconds=charging.settings.settle_seconds)


def _seconds_to_settle(charging: Charging, payment: Payment) -> float:
    age = (utcnow() - payment.created_at).total_seconds()
    return max(1.0, charging.settings.settle_seconds - age)


async def settle(charging: Charging, payment_id: uuid.UUID) -> Payment:
    """Ask the provider about an unsettled attempt and record what it knows.

    Raises ProviderUnreachable when the provider cannot tell; the attempt stays as it was.
    """
    async with charging.sessionmaker() as session:
        payment = await session.get(Payment, payment_id)
    if payment is None:
        raise PaymentNotFound()
    if payment.status not in UNSETTLED_STATUSES:
        return payment
    found = await charging.provider.lookup(payment.transaction_id)
    async with charging.sessionmaker() as session, session.begin():
        current = await repository.lock_payment(session, payment_id)
        if current is None:  # payments are never deleted
            raise RuntimeError(f"payment {payment_id} vanished")
        if current.status not in UNSETTLED_STATUSES:
            return current  # settled meanwhile by its own request or another settler
        if found is not None:
            await _succeed(session, current, found.charge_id)
        elif _settled(charging, current):
            _fail(session, current, "not_charged")
        else:
            return current  # the provider may still be working on it: ask again later
        log.info("payment_reconciled", payment_id=str(current.id), status=current.status)
    return current


async def _settle_or_unavailable(charging: Charging, payment_id: uuid.UUID) -> Payment:
    try:
        return await settle(charging, payment_id)
    except ProviderUnreachable:
        raise ProviderUnavailable(charging.settings.retry_after_seconds) from None


async def reconcile_unsettled(charging: Charging, batch_size: int = 100) -> int:
    """Settle attempts older than the provider timeout; the number settled.

    The worker runs this every few seconds. An attempt the provider has no charge for stays
    unsettled until it is past the grace period too (see `settle`).
    """
    cutoff = utcnow() - timedelta(seconds=charging.settings.provider_timeout_seconds)
    async with charging.sessionmaker() as session:
        candidates = await repository.unsettled_payments(session, cutoff, batch_size)
    settled = 0
    for candidate in candidates:
        try:
            payment = await settle(charging, candidate.id)
        except ProviderUnreachable as exc:
            log.warning("reconcile_waiting_for_provider", error=str(exc))
            break
        if payment.status not in UNSETTLED_STATUSES:
            settled += 1
    return settled


# --- the copy of invoices --------------------------------------------------------------------


async def copy_invoice(session: AsyncSession, owner_id: uuid.UUID, fields: dict[str, Any]) -> None:
    """Keep the invoice's copy as the invoice service last described it.

    Events of one owner arrive in order (their key is the owner), so the last one wins.
    """
    values = {"owner_id": owner_id, "updated_at": utcnow(), **fields}
    await repository.upsert_invoice(session, values)


# --- closed accounts --------------------------------------------------------------------------


async def close_owner_account(
    session: AsyncSession, owner_id: uuid.UUID, deleted_at: datetime
) -> None:
    """Refuse the deleted account's tokens from now on.

    Payments and the wallet stay, as bookkeeping records nobody can reach any more. A second
    `user.deleted` for the same user keeps the first one's time.
    """
    await repository.add_closed_account(
        session, owner_id, deleted_at.astimezone(UTC).replace(tzinfo=None)
    )


async def accounts_closed_since(session: AsyncSession, since: datetime) -> set[uuid.UUID]:
    return set(await repository.accounts_deleted_since(session, since))


# --- reading ----------------------------------------------------------------------------------


async def get_payment(session: AsyncSession, owner_id: uuid.UUID, payment_id: uuid.UUID) -> Payment:
    """The owner's payment; another owner's id is indistinguishable from a missing one."""
    payment = await repository.get_payment(session, owner_id, payment_id)
    if payment is None:
        raise PaymentNotFound()
    return payment


async def list_payments(
    session: AsyncSession, codec: CursorCodec, owner_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[Payment]:
    """One page of the owner's payments, newest first."""
    before = None
    if cursor is not None:
        try:
            before = uuid.UUID(hex=_cursor_id(codec, cursor, "payments"))
        except (TypeError, ValueError):
            raise _foreign_cursor() from None
    rows = list(await repository.list_payments(session, owner_id, before, limit + 1))
    next_cursor = None
    if len(rows) > limit:
        next_cursor = codec.encode({"q": "payments", "id": rows[limit - 1].id.hex})
    return Page(rows[:limit], next_cursor)


async def list_wallet_entries(
    session: AsyncSession, codec: CursorCodec, owner_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[WalletEntry]:
    """One page of the owner's wallet history, newest first."""
    before = None
    if cursor is not None:
        try:
            before = int(_cursor_id(codec, cursor, "wallet_entries"))
        except (TypeError, ValueError):
            raise _foreign_cursor() from None
    rows = list(await repository.list_entries(session, owner_id, before, limit + 1))
    next_cursor = None
    if len(rows) > limit:
        next_cursor = codec.encode({"q": "wallet_entries", "id": rows[limit - 1].id})
    return Page(rows[:limit], next_cursor)


def _cursor_id(codec: CursorCodec, cursor: str, listing: str) -> Any:
    """The id a cursor of this listing points after (the signature proves we wrote it)."""
    position = codec.decode(cursor)
    if position.get("q") != listing:
        raise InvalidInput("The cursor belongs to a different listing", field="cursor")
    return position.get("id")


def _foreign_cursor() -> InvalidInput:
    return InvalidInput("The cursor is not one this API issued", field="cursor")
