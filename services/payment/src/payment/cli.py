"""Operator commands of the payment service.

    python -m payment.cli billing-run [--as-of YYYY-MM-DD] [--dry-run]

starts the billing run of the schedule's latest fire time at or before the date (today by
default), or resumes it when it exists, charges what is due beside any running workers (the
claims share the work), shows progress (a bar on a terminal, plain lines otherwise) and
prints the run's report. `--dry-run` only shows what a run as of the date would charge.
When the database cannot be reached (down, restarting, a connection lost mid-run) it says so,
waits and resumes, for up to `--patience` seconds (300). Settings come from PAYMENT_* like
the service's (docs/payments.md).
"""

import argparse
import asyncio
import sys
import time as clock
import uuid
from datetime import UTC, date, datetime, time

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.errors import database_unavailable
from common.logging import configure_logging
from payment import billing
from payment.config import PaymentSettings, get_settings
from payment.models import BillingRun, BillingRunItem, ItemState
from payment.providers import create_provider

REPORT_FAILURES = 50
PROGRESS_SECONDS = 0.5
OUTAGE_PATIENCE_SECONDS = 300
OUTAGE_MAX_PAUSE_SECONDS = 10


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be YYYY-MM-DD") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m payment.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("billing-run", help="start or resume the monthly billing run")
    run.add_argument("--as-of", type=_date, help="charge invoices due by this date (UTC)")
    run.add_argument("--dry-run", action="store_true", help="show what would be charged")
    run.add_argument(
        "--patience",
        type=float,
        default=OUTAGE_PATIENCE_SECONDS,
        help="seconds to wait out a database outage before giving up",
    )
    return parser.parse_args(argv)


async def billing_run_through_outages(
    settings: PaymentSettings,
    as_of: date | None,
    dry_run: bool,
    console: Console,
    patience: float = OUTAGE_PATIENCE_SECONDS,
) -> int:
    """`billing_run`, started again after a database outage until it ends or `patience`
    seconds of outage have passed. Starting again is safe: the run of a fire time is one
    row found again, and each item is claimed and charged once (billing.py)."""
    pause = 1.0
    gave_up_at = clock.monotonic() + patience
    while True:
        try:
            return await billing_run(settings, as_of, dry_run, console)
        except Exception as exc:
            if not database_unavailable(exc) or clock.monotonic() + pause > gave_up_at:
                raise
            console.print(
                f"The database is unavailable ({type(exc).__name__}); resuming in {pause:.0f} s"
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, OUTAGE_MAX_PAUSE_SECONDS)


async def billing_run(
    settings: PaymentSettings, as_of: date | None, dry_run: bool, console: Console
) -> int:
    engine = create_engine(settings.database_url.get_secret_value(), pool_size=8)
    sessionmaker = create_sessionmaker(engine)
    try:
        now = billing.utc_clock()
        day = as_of or now.date()
        # The latest fire time of that day or before it (of now, for today).
        until = now if as_of is None else datetime.combine(day, time(23, 59, 59))
        scheduled_for = billing.latest_fire_time(settings.billing_schedule, until)
        if dry_run:
            await _show_preview(sessionmaker, day, scheduled_for, console)
            return 0
        limits = httpx.Limits(max_connections=settings.billing_concurrency + 10)
        async with httpx.AsyncClient(limits=limits) as http:
            worker = billing.Billing(sessionmaker, create_provider(settings, http), settings)
            worker.worker_id = f"cli:{worker.worker_id}"
            run = await _run_for(sessionmaker, scheduled_for)
            if run is None:
                await billing.start_run(worker, scheduled_for, day)
                run = await _run_for(sessionmaker, scheduled_for)
            if run is None:
                console.print("Another process is starting this run; try again in a minute.")
                return 1
            console.print(f"Billing run {run.id} for {scheduled_for:%Y-%m-%d %H:%M} UTC")
            await _charge_with_progress(worker, run.id, console)
        await _show_report(sessionmaker, run.id, console)
        return 0
    finally:
        await engine.dispose()


async def _run_for(
    sessionmaker: async_sessionmaker[AsyncSession], scheduled_for: datetime
) -> BillingRun | None:
    async with sessionmaker() as session:
        return await session.scalar(
            select(BillingRun).where(
                BillingRun.schedule == billing.SCHEDULE_NAME,
                BillingRun.scheduled_for == scheduled_for,
            )
        )


async def _progress(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID
) -> tuple[int, int]:
    """Items tried at least once (or settled without a try), and all items."""
    async with sessionmaker() as session:
        total = await session.scalar(select(func.count()).where(BillingRunItem.run_id == run_id))
        handled = await session.scalar(
            select(func.count()).where(
                BillingRunItem.run_id == run_id,
                (BillingRunItem.state == ItemState.DONE) | BillingRunItem.outcome.is_not(None),
            )
        )
    return int(handled or 0), int(total or 0)


async def _charge_with_progress(
    worker: billing.Billing, run_id: uuid.UUID, console: Console
) -> None:
    """Charge until nothing is due, showing progress twice a second meanwhile."""
    charging = asyncio.create_task(billing.charge_due_items(worker))
    handled, total = await _progress(worker.sessionmaker, run_id)
    shown = handled
    if console.is_terminal:
        columns = (TextColumn("charging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("charging", total=total, completed=handled)
            while not charging.done():
                await asyncio.wait({charging}, timeout=PROGRESS_SECONDS)
                handled, total = await _progress(worker.sessionmaker, run_id)
                bar.update(task, completed=handled, total=total)
    else:
        while not charging.done():
            await asyncio.wait({charging}, timeout=PROGRESS_SECONDS * 4)
            handled, total = await _progress(worker.sessionmaker, run_id)
            if handled != shown:
                console.print(f"charged {handled} of {total}")
                shown = handled
        handled, total = await _progress(worker.sessionmaker, run_id)
        if handled != shown:
            console.print(f"charged {handled} of {total}")
    await charging


async def _show_preview(
    sessionmaker: async_sessionmaker[AsyncSession],
    as_of: date,
    scheduled_for: datetime,
    console: Console,
) -> None:
    due = await billing.preview(sessionmaker, as_of)
    existing = await _run_for(sessionmaker, scheduled_for)
    console.print(f"Dry run: invoices due by {as_of} (nothing is charged)")
    if existing is not None:
        console.print(f"The run for {scheduled_for:%Y-%m-%d %H:%M} UTC exists: {existing.id}")
    table = Table("currency", "invoices", "total")
    for currency, (count, total) in sorted(due.items()):
        table.add_row(currency, str(count), f"{total:.2f}")
    console.print(table)


async def _show_report(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID, console: Console
) -> None:
    async with sessionmaker() as session:
        run = await session.get(BillingRun, run_id)
        counts = await billing.outcome_counts(session, run_id)
        failed = (
            await session.scalars(
                select(BillingRunItem)
                .where(BillingRunItem.run_id == run_id, BillingRunItem.outcome == "failed")
                .order_by(BillingRunItem.id)
                .limit(REPORT_FAILURES)
            )
        ).all()
    if run is None:  # the run this command started or resumed; runs are never deleted
        raise RuntimeError(f"billing run {run_id} not found")
    console.print(f"Run {run.id}: {run.status}")
    table = Table("outcome", "invoices")
    for outcome, count in sorted(counts.items()):
        table.add_row(outcome, str(count))
    console.print(table)
    if failed:
        console.print("FAILED invoices (a person acts on these):")
        reasons = Table("invoice", "client", "amount", "reason")
        for item in failed:
            reasons.add_row(
                str(item.invoice_id),
                str(item.client_id),
                f"{item.amount:.2f} {item.currency}",
                item.failure_code or "",
            )
        console.print(reasons)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = get_settings()
    # Logs go to stderr, so the progress and the report stay readable on stdout.
    configure_logging("payment-cli", "WARNING", settings.log_format)
    # Piped output is not cut to 80 columns: a report line holds an invoice id whole.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    started = datetime.now(UTC)
    code = asyncio.run(
        billing_run_through_outages(settings, args.as_of, args.dry_run, console, args.patience)
    )
    console.print(f"took {(datetime.now(UTC) - started).total_seconds():.1f} s")
    sys.exit(code)


if __name__ == "__main__":
    main()
