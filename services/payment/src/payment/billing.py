"""The monthly billing run: charge every open invoice that has come due through the client's
saved payment method, exactly once, however many workers run and wherever they crash.

How a run goes (docs/payments.md has the whole argument):

1. Starting. Every worker looks, each tick, for the schedule's latest fire time (a cron
   expression in UTC) at or before now. If no run exists for it, the worker that takes the
   `billing-run-start` lease (ShedLock's semantics, in MySQL) creates the run and one item
   per open, due invoice, in one transaction; the run's unique (schedule, scheduled_for)
   makes a second run for the same fire time impossible even if the lease were lost. A
   worker that was down at the fire time starts it when it comes back.
2. Charging. Any worker claims a batch of queued items whose time has come (SELECT ... FOR
   UPDATE SKIP LOCKED, then a claim that expires), and charges them a few dozen at a time.
   A killed worker's claims expire and another worker takes the items over.
3. An attempt is a `payments` row of kind autopay, committed before the provider is called;
   its `active_invoice_id` (unique) lets one attempt at a time hold an invoice, and its id is
   the idempotency key the provider gets. An attempt whose outcome was lost is asked about
   (lookup by transaction id) and then sent again under the same key, which the provider
   answers without charging twice. A new attempt (a new key) is only made once the previous
   one is known to have charged nothing.

The clock is a parameter everywhere, so tests choose the date.
"""

import asyncio
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from cronsim import CronSim
from prometheus_client import Counter, Gauge
from sqlalchemy import and_, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_result,
    stop_after_attempt,
    wait_exponential_jitter,
)

from common.errors import InvalidInput
from common.events import new_event
from common.ids import uuid7
from common.logging import get_logger
from common.outbox import add_event
from common.pagination import CursorCodec, Page
from payment import repository
from payment.config import PaymentSettings
from payment.events import (
    PAYMENT_FAILED,
    PAYMENT_SUCCEEDED,
    SOURCE,
    TOPIC,
    PaymentFailed,
    PaymentSucceeded,
)
from payment.exceptions import BillingRunNotFound
from payment.models import (
    UNSETTLED_STATUSES,
    BillingRun,
    BillingRunItem,
    InvoiceCopy,
    ItemOutcome,
    ItemState,
    OutboxMessage,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    RunStatus,
    SchedulerLock,
)
from payment.providers import (
    ChargeOutcome,
    Outcome,
    PaymentProvider,
    ProviderUnreachable,
    SavedCharge,
)

log = get_logger(__name__)

# The billing run's progress, as each worker sees it (docs/observability.md).
BILLING_CHARGES = Counter(
    "billing_run_charges",
    "Outcomes of billing-run charge attempts: paid, retry_scheduled (declined, tried again "
    "days later), provider_unavailable (tried again soon), failed (final), skipped",
    ["outcome"],
)
BILLING_RUN_RUNNING = Gauge("billing_run_running", "Billing runs charging now (not finished)")
BILLING_RUN_STARTED = Gauge(
    "billing_run_started_timestamp_seconds",
    "When the oldest billing run still charging started; 0 when none is",
)
BILLING_RUN_LAST_FINISHED = Gauge(
    "billing_run_last_finished_timestamp_seconds", "When the last billing run finished; 0 if none"
)

SCHEDULE_NAME = "monthly"
START_LEASE = "billing-run-start"
# The invoice statuses (as the invoice service names them) that the run charges.
CHARGEABLE_STATUSES = ("pending", "past_due")
# Provider failure codes that a later attempt can fix; every other refusal is final.
DECLINE_CODES = frozenset({"insufficient_funds", "declined"})

# The outcome of a resumed attempt the provider has no charge for, once its invoice closed.
INVOICE_CLOSED = "invoice_closed"

Clock = Callable[[], datetime]


def utc_clock() -> datetime:
    """Naive UTC, like every DateTime column of the schema."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Billing:
    """What a worker's billing needs: sessions, the provider, settings, a clock, its name."""

    sessionmaker: async_sessionmaker[AsyncSession]
    provider: PaymentProvider
    settings: PaymentSettings
    clock: Clock = utc_clock
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}")


# --- when a run is due ------------------------------------------------------------------------


def latest_fire_time(expression: str, now: datetime) -> datetime:
    """The schedule's last fire time at or before now (UTC, naive)."""
    # CronSim steps strictly past its start, so start one second later to include `now`.
    return next(CronSim(expression, now + timedelta(seconds=1), reverse=True))


# --- the lease (ShedLock) ---------------------------------------------------------------------


async def acquire_lease(
    sessionmaker: async_sessionmaker[AsyncSession],
    name: str,
    holder: str,
    now: datetime,
    seconds: float,
) -> bool:
    """Take the named lease until now + seconds, if nobody holds it; True when taken.

    ShedLock's algorithm: update the row where its lock_until has passed, or insert it when
    there is none yet; each statement on its own, so two workers cannot both succeed. A
    deadlock between two first-ever inserts counts as not taken: the other one has it.
    """
    until = now + timedelta(seconds=seconds)
    try:
        async with sessionmaker() as session, session.begin():
            taken = await session.execute(
                update(SchedulerLock)
                .where(SchedulerLock.name == name, SchedulerLock.lock_until <= now)
                .values(lock_until=until, locked_at=now, locked_by=holder)
            )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return True
        async with sessionmaker() as session, session.begin():
            exists = await session.scalar(select(func.count()).where(SchedulerLock.name == name))
            if exists:
                return False
            session.add(SchedulerLock(name=name, lock_until=until, locked_at=now, locked_by=holder))
        return True
    except (IntegrityError, OperationalError):
        return False


async def release_lease(
    sessionmaker: async_sessionmaker[AsyncSession], name: str, holder: str, now: datetime
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(SchedulerLock)
            .where(SchedulerLock.name == name, SchedulerLock.locked_by == holder)
            .values(lock_until=now)
        )


# --- starting a run ---------------------------------------------------------------------------


async def start_due_run(billing: Billing) -> BillingRun | None:
    """Start the run of the schedule's latest fire time if it has none yet.

    Returns the run this call created, None when there was nothing to start (already
    started, too late, or another worker holds the start lease).
    """
    now = billing.clock()
    scheduled_for = latest_fire_time(billing.settings.billing_schedule, now)
    if now - scheduled_for > timedelta(days=billing.settings.billing_max_lateness_days):
        return None
    async with billing.sessionmaker() as session:
        existing = await _run_for(session, scheduled_for)
    if existing is not None:
        return None
    return await start_run(billing, scheduled_for, scheduled_for.date())


async def start_run(billing: Billing, scheduled_for: datetime, as_of: date) -> BillingRun | None:
    """Create the run for this fire time with an item per open invoice due by as_of.

    Under the start lease; None when another worker holds it or the run already exists.
    """
    now = billing.clock()
    settings = billing.settings
    if not await acquire_lease(
        billing.sessionmaker, START_LEASE, billing.worker_id, now, settings.billing_lease_seconds
    ):
        return None
    try:
        async with billing.sessionmaker() as session, session.begin():
            if await _run_for(session, scheduled_for) is not None:
                return None
            run = BillingRun(
                id=uuid7(),
                schedule=SCHEDULE_NAME,
                scheduled_for=scheduled_for,
                as_of=as_of,
                status=RunStatus.CHARGING,
                started_by=billing.worker_id,
                started_at=now,
            )
            session.add(run)
            await session.flush()
            # One statement: the run and all its items exist together or not at all.
            due = select(
                literal(run.id.bytes).label("run_id"),
                InvoiceCopy.invoice_id,
                InvoiceCopy.owner_id,
                InvoiceCopy.client_id,
                InvoiceCopy.amount,
                InvoiceCopy.currency,
                literal(ItemState.QUEUED.value),
                literal(0),
                literal(now),
                literal(now),
            ).where(
                InvoiceCopy.status.in_(CHARGEABLE_STATUSES),
                InvoiceCopy.due_date <= as_of,
            )
            result = await session.execute(
                insert(BillingRunItem).from_select(
                    [
                        "run_id",
                        "invoice_id",
                        "owner_id",
                        "client_id",
                        "amount",
                        "currency",
                        "state",
                        "attempts",
                        "next_attempt_at",
                        "updated_at",
                    ],
                    due,
                )
            )
        log.info(
            "billing_run_started",
            run_id=str(run.id),
            scheduled_for=scheduled_for.isoformat(),
            invoices=result.rowcount,  # type: ignore[attr-defined]
        )
        return run
    except IntegrityError:
        return None  # another worker created it between our check and our insert
    finally:
        await release_lease(billing.sessionmaker, START_LEASE, billing.worker_id, billing.clock())


async def _run_for(session: AsyncSession, scheduled_for: datetime) -> BillingRun | None:
    return await session.scalar(
        select(BillingRun).where(
            BillingRun.schedule == SCHEDULE_NAME, BillingRun.scheduled_for == scheduled_for
        )
    )


async def preview(
    sessionmaker: async_sessionmaker[AsyncSession], as_of: date
) -> dict[str, tuple[int, Decimal]]:
    """What a run as of this date would charge, by currency (for --dry-run): count, total."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(InvoiceCopy.currency, func.count(), func.sum(InvoiceCopy.amount))
            .where(
                InvoiceCopy.status.in_(CHARGEABLE_STATUSES),
                InvoiceCopy.due_date <= as_of,
            )
            .group_by(InvoiceCopy.currency)
        )
        return {currency: (count, total) for currency, count, total in rows}


# --- charging ---------------------------------------------------------------------------------


async def charge_due_items(billing: Billing, max_batches: int | None = None) -> int:
    """Claim and charge queued items whose time has come until none is left; the number
    handled. Workers run this side by side: each claims its own batches.

    A batch is as large as the concurrency, and a few batches are in flight at once, so the
    provider stays busy while one batch's outcomes are written and the next one prepared.
    """
    settings = billing.settings
    semaphore = asyncio.Semaphore(settings.billing_concurrency)
    in_flight: set[asyncio.Task[int]] = set()
    handled = 0
    batches = 0
    more = True
    while True:
        while more and len(in_flight) < PIPELINE_DEPTH:
            if max_batches is not None and batches >= max_batches:
                more = False
                break
            claim, ids = await _claim_batch(billing, settings.billing_concurrency)
            if not ids:
                more = False
                break
            batches += 1
            in_flight.add(asyncio.create_task(_charge_batch(billing, claim, ids, semaphore)))
        if not in_flight:
            break
        done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            try:
                handled += task.result()
            except Exception as exc:  # a batch's trouble must not stop the others
                log.error("billing_batch_error", error_type=type(exc).__name__, error=str(exc))
    await update_run_statuses(billing)
    return handled


# Batches in flight in one worker at once.
PIPELINE_DEPTH = 3


async def _claim_batch(billing: Billing, size: int) -> tuple[str, list[int]]:
    """Claim up to `size` queued items that are due and not claimed by a live worker."""
    now = billing.clock()
    claim = f"{billing.worker_id}:{uuid.uuid4().hex[:8]}"
    async with billing.sessionmaker() as session, session.begin():
        ids = list(
            await session.scalars(
                select(BillingRunItem.id)
                .where(
                    BillingRunItem.state == ItemState.QUEUED,
                    BillingRunItem.next_attempt_at <= now,
                    (BillingRunItem.claimed_until.is_(None)) | (BillingRunItem.claimed_until < now),
                )
                .order_by(BillingRunItem.next_attempt_at, BillingRunItem.id)
                .limit(size)
                .with_for_update(skip_locked=True)
            )
        )
        if ids:
            until = now + timedelta(seconds=billing.settings.billing_claim_seconds)
            await session.execute(
                update(BillingRunItem)
                .where(BillingRunItem.id.in_(ids))
                .values(claimed_by=claim, claimed_until=until)
            )
    return claim, ids


@dataclass(frozen=True)
class _Attempt:
    """An attempt to send to the provider, read in the transaction that made or found it."""

    item_id: int
    payment_id: uuid.UUID
    charge: SavedCharge
    resumed: bool  # an earlier attempt whose outcome was lost: asked about before resending
    # False for a resumed attempt whose invoice was paid, voided or failed meanwhile: it is
    # only asked about, never sent again.
    resend: bool = True


async def _charge_batch(
    billing: Billing, claim: str, ids: list[int], semaphore: asyncio.Semaphore
) -> int:
    """Prepare the batch's attempts in one transaction, send them side by side, and write
    their outcomes in one transaction."""
    try:
        attempts = await _prepare_attempts(billing, ids, claim)
    except IntegrityError:
        # A card payment took one of the invoices between our read and our insert: the
        # batch rolled back whole; one by one, only that invoice is held up.
        attempts = []
        for item_id in ids:
            try:
                attempts += await _prepare_attempts(billing, [item_id], claim)
            except IntegrityError:
                log.info("billing_item_taken_meanwhile", item_id=item_id)

    async def send(attempt: _Attempt) -> tuple[_Attempt, ChargeOutcome]:
        async with semaphore:
            return attempt, await _send(billing, attempt)

    results = await asyncio.gather(*(send(attempt) for attempt in attempts))
    if results:
        await _record_outcomes(billing, list(results))
    return len(ids)


async def charge_item(billing: Billing, item_id: int, claim: str) -> None:
    """Charge one claimed item and record its outcome."""
    for attempt in await _prepare_attempts(billing, [item_id], claim):
        await _record_outcomes(billing, [(attempt, await _send(billing, attempt))])


async def _prepare_attempts(billing: Billing, ids: list[int], claim: str) -> list[_Attempt]:
    """For each claimed item, its unsettled attempt or a new one, committed before anything
    is sent. Items that end here (no payment method, invoice no longer open or paid by other
    means) get their outcome; items whose claim another worker took over are left alone."""
    now = billing.clock()
    attempts: list[_Attempt] = []
    async with billing.sessionmaker() as session, session.begin():
        items = [
            item
            for item in await session.scalars(
                select(BillingRunItem)
                .where(BillingRunItem.id.in_(ids))
                .order_by(BillingRunItem.id)
                .with_for_update()
            )
            if item.state == ItemState.QUEUED and item.claimed_by == claim
        ]
        if not items:
            return []
        invoice_ids = [item.invoice_id for item in items]
        current = await _by_id(session, [i.payment_id for i in items if i.payment_id])
        invoices = {
            row.invoice_id: row
            for row in await session.scalars(
                select(InvoiceCopy).where(InvoiceCopy.invoice_id.in_(invoice_ids))
            )
        }
        holders = {
            row.active_invoice_id: row
            for row in await session.scalars(
                select(Payment).where(Payment.active_invoice_id.in_(invoice_ids))
            )
        }
        methods: dict[tuple[uuid.UUID, int], PaymentMethod] = {}
        rows = await session.scalars(
            select(PaymentMethod)
            .where(
                PaymentMethod.owner_id.in_({item.owner_id for item in items}),
                PaymentMethod.client_id.in_({item.client_id for item in items}),
            )
            .order_by(PaymentMethod.id)
        )
        for row in rows:  # ascending ids: the newest of a client is kept
            methods[(row.owner_id, row.client_id)] = row

        for item in items:
            unsettled = current.get(item.payment_id) if item.payment_id else None
            invoice = invoices.get(item.invoice_id)
            open_invoice = invoice is not None and invoice.status in CHARGEABLE_STATUSES
            if unsettled is not None and unsettled.status in UNSETTLED_STATUSES:
                attempt = _attempt_of(item, unsettled, resumed=True)
                attempts.append(replace(attempt, resend=open_invoice))
                continue
            if invoice is None or not open_invoice:
                status = "unknown" if invoice is None else invoice.status
                _finish(item, ItemOutcome.SKIPPED, f"invoice_{status}", now)
                continue
            holder = holders.get(item.invoice_id)
            if holder is not None:
                if holder.status == PaymentStatus.SUCCEEDED:
                    _finish(item, ItemOutcome.ALREADY_PAID, None, now)
                else:
                    # A card payment of this invoice is in flight: look again a little later.
                    item.next_attempt_at = now + timedelta(seconds=billing.settings.settle_seconds)
                    item.claimed_until = None
                continue
            saved = methods.get((item.owner_id, item.client_id))
            if saved is None:
                _finish(item, ItemOutcome.NO_PAYMENT_METHOD, None, now)
                continue
            payment = _new_attempt(item, invoice, saved, now)
            session.add(payment)
            item.payment_id = payment.id
            item.attempts += 1
            item.updated_at = now
            if item.first_attempt_at is None:
                item.first_attempt_at = now
            attempts.append(_attempt_of(item, payment, resumed=False))
        # The inserts fail on the unique active_invoice_id if another attempt slipped in;
        # the transaction then rolls back whole and nothing is sent.
    return attempts


async def _by_id(session: AsyncSession, payment_ids: list[uuid.UUID]) -> dict[uuid.UUID, Payment]:
    if not payment_ids:
        return {}
    rows = await session.scalars(select(Payment).where(Payment.id.in_(payment_ids)))
    return {payment.id: payment for payment in rows}


def _attempt_of(item: BillingRunItem, payment: Payment, resumed: bool) -> _Attempt:
    if payment.provider_token is None or payment.invoice_id is None:
        raise ValueError("not an autopay attempt")
    charge = SavedCharge(
        token=payment.provider_token,
        transaction_id=payment.transaction_id,
        amount=payment.amount,
        currency=payment.currency,
        reference=str(payment.invoice_id),
    )
    return _Attempt(item.id, payment.id, charge, resumed)


def _new_attempt(
    item: BillingRunItem, invoice: InvoiceCopy, method: PaymentMethod, now: datetime
) -> Payment:
    payment_id = uuid7()
    return Payment(
        id=payment_id,
        owner_id=item.owner_id,
        kind=PaymentKind.AUTOPAY,
        invoice_id=item.invoice_id,
        active_invoice_id=item.invoice_id,
        status=PaymentStatus.PROCESSING,
        amount=invoice.amount,
        currency=invoice.currency,
        description=f"Automatic payment of invoice {item.invoice_id}",
        provider=method.provider,
        # The attempt's own id: the provider's idempotency key for this attempt only.
        transaction_id=str(payment_id),
        card_number_masked=method.card_number_masked,
        card_last4=method.card_last4,
        card_expiry=method.card_expiry,
        card_name=method.card_name,
        payment_method_id=method.id,
        provider_token=method.provider_token,
        client_email=invoice.client_email,
        client_name=invoice.client_name,
        invoice_number=invoice.number,
        created_at=now,
        updated_at=now,
    )


def _unsure(outcome: ChargeOutcome) -> bool:
    return outcome.outcome in (Outcome.UNKNOWN, Outcome.NOT_SENT)


async def _send(billing: Billing, attempt: _Attempt) -> ChargeOutcome:
    """The attempt's outcome: network errors, timeouts and 5xx are retried with exponential
    backoff and jitter; before a retry (and before resuming a lost attempt) the provider is
    asked whether it already took the charge. Resending uses the same idempotency key."""
    settings = billing.settings
    first = True
    if not attempt.resend:
        try:
            found = await billing.provider.lookup(attempt.charge.transaction_id)
        except ProviderUnreachable:
            return ChargeOutcome(Outcome.UNKNOWN)
        return found or ChargeOutcome(Outcome.NOT_SENT, failure_code=INVOICE_CLOSED)

    async def once() -> ChargeOutcome:
        nonlocal first
        if attempt.resumed or not first:
            try:
                found = await billing.provider.lookup(attempt.charge.transaction_id)
            except ProviderUnreachable:
                return ChargeOutcome(Outcome.UNKNOWN)
            if found is not None:
                return found
        first = False
        return await billing.provider.charge_saved(attempt.charge)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.billing_network_attempts),
        wait=wait_exponential_jitter(
            multiplier=settings.billing_network_backoff_seconds,
            jitter=settings.billing_network_backoff_seconds,
            max=settings.billing_network_backoff_max_seconds,
        ),
        retry=retry_if_result(_unsure),
    )
    try:
        return await retrying(once)
    except RetryError as exc:
        last: ChargeOutcome = exc.last_attempt.result()
        return last


async def _record_outcomes(billing: Billing, results: list[tuple[_Attempt, ChargeOutcome]]) -> None:
    """Write the attempts' outcomes, the items' and the events, in one transaction."""
    now = billing.clock()
    recorded: list[str] = []
    async with billing.sessionmaker() as session, session.begin():
        items = {
            item.id: item
            for item in await session.scalars(
                select(BillingRunItem)
                .where(BillingRunItem.id.in_([attempt.item_id for attempt, _ in results]))
                .order_by(BillingRunItem.id)
                .with_for_update()
            )
        }
        payments = {
            payment.id: payment
            for payment in await session.scalars(
                select(Payment)
                .where(Payment.id.in_([attempt.payment_id for attempt, _ in results]))
                .with_for_update()
            )
        }
        invoices = {
            row.invoice_id: row
            for row in await session.scalars(
                select(InvoiceCopy).where(
                    InvoiceCopy.invoice_id.in_([item.invoice_id for item in items.values()])
                )
            )
        }
        for attempt, outcome in results:
            item = items[attempt.item_id]
            payment = payments[attempt.payment_id]
            if item.state != ItemState.QUEUED or item.payment_id != payment.id:
                continue  # another worker recorded it after our claim expired
            if payment.status not in UNSETTLED_STATUSES:
                continue
            _apply_outcome(
                session,
                billing.settings,
                item,
                payment,
                invoices.get(item.invoice_id),
                outcome,
                now,
            )
            recorded.append(item.outcome or "pending")
    for item_outcome in recorded:
        BILLING_CHARGES.labels(item_outcome).inc()


def _apply_outcome(
    session: AsyncSession,
    settings: PaymentSettings,
    item: BillingRunItem,
    payment: Payment,
    invoice: InvoiceCopy | None,
    outcome: ChargeOutcome,
    now: datetime,
) -> None:
    item.claimed_until = None
    item.updated_at = now
    if outcome.outcome == Outcome.SUCCEEDED:
        _succeed(session, payment, outcome.charge_id, now)
        _finish(item, ItemOutcome.PAID, None, now)
        return
    if outcome.outcome == Outcome.UNKNOWN:
        # Kept unsettled and holding the invoice: the next attempt asks the provider first
        # and resends under the same key.
        payment.status = PaymentStatus.UNKNOWN
        item.outcome = ItemOutcome.PROVIDER_UNAVAILABLE
        item.next_attempt_at = now + timedelta(seconds=settings.billing_unavailable_retry_seconds)
        return
    if outcome.failure_code == INVOICE_CLOSED:
        # The provider has no charge for an attempt whose invoice closed meanwhile. Once no
        # request of ours can still reach it, the attempt charged nothing for good.
        if now - payment.created_at >= timedelta(seconds=settings.settle_seconds):
            _release(payment, "not_charged", now)
            _finish(item, ItemOutcome.SKIPPED, INVOICE_CLOSED, now)
        else:
            payment.status = PaymentStatus.UNKNOWN
            item.next_attempt_at = now + timedelta(seconds=settings.settle_seconds)
        return
    if outcome.outcome == Outcome.NOT_SENT:
        # Never reached the provider: nothing was charged, and nobody needs telling.
        _release(payment, "provider_unavailable", now)
        item.outcome = ItemOutcome.PROVIDER_UNAVAILABLE
        item.next_attempt_at = now + timedelta(seconds=settings.billing_unavailable_retry_seconds)
        return
    code = outcome.failure_code or outcome.outcome.value
    _release(payment, code, now)
    next_attempt_at = None
    if outcome.outcome == Outcome.DECLINED and code in DECLINE_CODES:
        next_attempt_at = _next_decline_retry(settings, item)
    if next_attempt_at is not None:
        item.outcome = ItemOutcome.RETRY_SCHEDULED
        item.failure_code = code
        item.next_attempt_at = next_attempt_at
    else:
        _finish(item, ItemOutcome.FAILED, code, now)
    _publish_failure(session, payment, item, invoice, code, next_attempt_at, now)


def _next_decline_retry(settings: PaymentSettings, item: BillingRunItem) -> datetime | None:
    """When a declined item is tried again: the schedule's days after its first attempt."""
    delays = settings.billing_decline_retry_delays
    declined_before = item.attempts - 1  # attempts counts this one
    if declined_before >= len(delays) or item.first_attempt_at is None:
        return None
    return item.first_attempt_at + timedelta(days=delays[declined_before])


def _finish(item: BillingRunItem, outcome: ItemOutcome, code: str | None, now: datetime) -> None:
    item.state = ItemState.DONE
    item.outcome = outcome
    item.failure_code = code
    item.claimed_until = None
    item.updated_at = now


def _release(payment: Payment, code: str, now: datetime) -> None:
    """Nothing was charged: the attempt fails and frees the invoice for the next one."""
    payment.status = PaymentStatus.FAILED
    payment.failure_code = code
    payment.active_invoice_id = None
    payment.updated_at = now


def _succeed(
    session: AsyncSession,
    payment: Payment,
    charge_id: str | None,
    now: datetime,
) -> None:
    payment.status = PaymentStatus.SUCCEEDED
    payment.provider_charge_id = charge_id
    payment.updated_at = now
    payload = PaymentSucceeded(
        payment_id=payment.id,
        invoice_id=payment.invoice_id,
        owner_id=payment.owner_id,
        amount=payment.amount,
        currency=payment.currency,
        kind="autopay",
        card_last4=payment.card_last4,
        occurred_at=now.replace(tzinfo=UTC),
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


def _publish_failure(
    session: AsyncSession,
    payment: Payment,
    item: BillingRunItem,
    invoice: InvoiceCopy | None,
    code: str,
    next_attempt_at: datetime | None,
    now: datetime,
) -> None:
    payload = PaymentFailed(
        payment_id=payment.id,
        invoice_id=payment.invoice_id,
        owner_id=payment.owner_id,
        amount=payment.amount,
        currency=payment.currency,
        kind="autopay",
        card_last4=payment.card_last4,
        failure_code=code,
        occurred_at=now.replace(tzinfo=UTC),
        client_id=item.client_id,
        client_email=invoice.client_email if invoice else None,
        client_name=invoice.client_name if invoice else None,
        final=next_attempt_at is None,
        next_attempt_at=next_attempt_at.replace(tzinfo=UTC) if next_attempt_at else None,
        billing_run_id=item.run_id,
    )
    add_event(
        session, OutboxMessage, TOPIC, new_event(SOURCE, PAYMENT_FAILED, payment.owner_id, payload)
    )
    log.info(
        "billing_charge_failed",
        payment_id=str(payment.id),
        failure_code=code,
        final=next_attempt_at is None,
    )


async def update_run_statuses(billing: Billing) -> None:
    """Finish runs with no queued item; mark runs whose only queued items wait for a
    decline retry."""
    now = billing.clock()
    async with billing.sessionmaker() as session, session.begin():
        runs = (
            await session.scalars(
                select(BillingRun).where(BillingRun.status != RunStatus.FINISHED).with_for_update()
            )
        ).all()
        for run in runs:
            queued = select(func.count()).where(
                BillingRunItem.run_id == run.id, BillingRunItem.state == ItemState.QUEUED
            )
            waiting = await session.scalar(queued)
            if not waiting:
                run.status = RunStatus.FINISHED
                run.finished_at = now
                log.info("billing_run_finished", run_id=str(run.id))
                continue
            charging_now = await session.scalar(
                queued.where(
                    and_(
                        BillingRunItem.outcome.is_distinct_from(ItemOutcome.RETRY_SCHEDULED),
                    )
                )
            )
            run.status = RunStatus.CHARGING if charging_now else RunStatus.WAITING_RETRIES
        charging = [run.started_at for run in runs if run.status == RunStatus.CHARGING]
        last_finished = await session.scalar(select(func.max(BillingRun.finished_at)))
    # After the commit: what the metrics show is what the schema holds.
    BILLING_RUN_RUNNING.set(len(charging))
    BILLING_RUN_STARTED.set(_timestamp(min(charging, default=None)))
    BILLING_RUN_LAST_FINISHED.set(_timestamp(last_finished))


def _timestamp(moment: datetime | None) -> float:
    """Seconds since the epoch of a naive UTC time; 0 for none, as Prometheus has it."""
    return moment.replace(tzinfo=UTC).timestamp() if moment is not None else 0.0


async def tick(billing: Billing) -> int:
    """One pass of a worker: start a due run, then charge what is due."""
    await start_due_run(billing)
    return await charge_due_items(billing)


# --- reading ----------------------------------------------------------------------------------


async def outcome_counts(
    session: AsyncSession, run_id: uuid.UUID, owner_id: uuid.UUID | None = None
) -> dict[str, int]:
    """Items per outcome (`queued` for those without one yet)."""
    query = (
        select(func.coalesce(BillingRunItem.outcome, "queued"), func.count())
        .where(BillingRunItem.run_id == run_id)
        .group_by(func.coalesce(BillingRunItem.outcome, "queued"))
    )
    if owner_id is not None:
        query = query.where(BillingRunItem.owner_id == owner_id)
    rows = await session.execute(query)
    return {str(outcome): int(count) for outcome, count in rows}


@dataclass(frozen=True)
class RunReport:
    run: BillingRun
    counts: dict[str, int]


@dataclass(frozen=True)
class RunDetail:
    report: RunReport
    items: list[BillingRunItem]
    next_cursor: str | None


async def list_runs(
    session: AsyncSession,
    codec: CursorCodec,
    owner_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> Page[RunReport]:
    """Runs newest first, each with the counts of the owner's invoices (all, for None)."""
    before = None
    if cursor is not None:
        before = uuid.UUID(hex=_cursor_value(codec, cursor, "billing_runs"))
    runs = list(await repository.list_runs(session, before, limit + 1))
    next_cursor = None
    if len(runs) > limit:
        next_cursor = codec.encode({"q": "billing_runs", "id": runs[limit - 1].id.hex})
    reports = [
        RunReport(run, await outcome_counts(session, run.id, owner_id)) for run in runs[:limit]
    ]
    return Page(reports, next_cursor)


async def run_detail(
    session: AsyncSession,
    codec: CursorCodec,
    owner_id: uuid.UUID | None,
    run_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> RunDetail:
    """The run's counts and one page of the owner's invoices' outcomes (all, for None)."""
    run = await session.get(BillingRun, run_id)
    if run is None:
        raise BillingRunNotFound()
    after = None
    if cursor is not None:
        after = int(_cursor_value(codec, cursor, f"billing_run_items:{run_id.hex}"))
    items = list(await repository.list_run_items(session, run_id, owner_id, after, limit + 1))
    next_cursor = None
    if len(items) > limit:
        position = {"q": f"billing_run_items:{run_id.hex}", "id": items[limit - 1].id}
        next_cursor = codec.encode(position)
    report = RunReport(run, await outcome_counts(session, run_id, owner_id))
    return RunDetail(report, items[:limit], next_cursor)


def _cursor_value(codec: CursorCodec, cursor: str, listing: str) -> str:
    position = codec.decode(cursor)
    value = position.get("id")
    if position.get("q") != listing or not isinstance(value, (str, int)):
        raise InvalidInput("The cursor belongs to a different listing", field="cursor")
    return str(value)
