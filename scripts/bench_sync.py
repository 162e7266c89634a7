"""The sync benchmark: invoices imported per second end to end, beside a bulk insert.

End to end is what an owner waits for: from the dispatch of the jobs to the last invoice's
row in the invoice schema, through everything in between (a page read from the billing
platform simulator over HTTP, checked, compared with what was read before, its event and
checkpoint committed in sync_svc, relayed to the broker, consumed by the invoice worker and
upserted in its inbox transaction, with an `invoice.created` outbox row per invoice). Two
shapes: one owner with 100,000 invoices, and 1,000 owners with 100 each.

The floor, in the same run on the same server: the same number of invoice rows (and their
clients) bulk-inserted straight into a migrated invoice schema, 1,000 rows a statement, one
transaction per statement. The figure is the ratio (goal: at least 0.5).

Outages: the 1,000-owner shape again, with three outages of the platform (503 for every
request) at a quarter, half and three quarters of the way; the figure is its time against
the clean time plus the outages' length (goal: at most 1.1).

Processes: the platform simulator, the dev broker, two sync workers and an invoice worker.
Run with `make bench` or `.venv/bin/python scripts/bench_sync.py [--quick] [--output FILE]`.
It needs the local MariaDB as root without a password and creates throwaway schemas.
"""

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.ids import uuid7
from common.outbox import utcnow
from common.testing.plugin import migrate_schema, temporary_database
from common.testing.servers import MysqlServer, free_port, logged_process, start_tansu
from invoice.models import Client, Invoice
from simulators.billing_platform_testing import BillingPlatformControl, BillingPlatformServer
from sync.config import SyncSettings
from sync.crypto import Keyring
from sync.models import Connection, JobState, Phase
from sync.worker import dispatch_all

ROOT = Path(__file__).resolve().parent.parent
MYSQL = MysqlServer("127.0.0.1", 3306, "root", "")
KEY = "bench:" + "YmVuY2gta2V5LW9mLXRoaXJ0eS10d28tYnl0ZXMtLS0="  # 32 bytes, base64
SYNC_WORKERS = 2


@dataclass(frozen=True)
class Shape:
    name: str
    owners: int
    invoices_each: int

    @property
    def total(self) -> int:
        return self.owners * self.invoices_each


def say(message: str) -> None:
    print(message, flush=True)


def worker_env(logs: Path, sync_url: str, invoice_url: str, bootstrap: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "E2E_LOGS": str(logs),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SYNC_DATABASE_URL": sync_url,
        "INVOICE_DATABASE_URL": invoice_url,
        "SYNC_CONNECTION_KEY": KEY,
        # The defaults, but for what makes an outage cost seconds rather than minutes here.
        "SYNC_BREAKER_OPEN_SECONDS": "2",
        "SYNC_RETRY_FOR_SECONDS": "3",
        "SYNC_PARK_BASE_SECONDS": "1",
        "SYNC_PARK_MAX_SECONDS": "30",
        "SYNC_RECOVER_EVERY_SECONDS": "0.5",
        "SYNC_DISPATCH_EVERY_SECONDS": "0",
    }


async def connect_all(
    sessions: async_sessionmaker[AsyncSession],
    control: BillingPlatformControl,
    base_url: str,
    shape: Shape,
) -> list[str]:
    """Accounts on the platform and a resting connection for each; the account ids."""
    keyring = Keyring.parse(KEY)
    accounts = []
    rows = []
    for n in range(shape.owners):
        account, api_key = await asyncio.to_thread(
            control.create_account,
            name=f"{shape.name} {n}",
            clients=5,
            invoices=shape.invoices_each,
        )
        accounts.append(account)
        connection_id = uuid.uuid4()
        sealed = keyring.seal(api_key, connection_id)
        rows.append(
            {
                "id": connection_id,
                "owner_id": uuid.uuid4(),
                "base_url": base_url,
                "api_key_sealed": sealed.data,
                "api_key_key_id": sealed.key_id,
                "created_at": utcnow(),
                "state": JobState.IDLE,
                "scan_number": 0,
                "phase": Phase.CLIENTS,
                "pages_read": 0,
                "invoices_seen": 0,
                "invoices_changed": 0,
                "invoices_skipped": 0,
                "failures": 0,
            }
        )
    async with sessions() as session, session.begin():
        for start in range(0, len(rows), 500):
            await session.execute(insert(Connection), rows[start : start + 500])
    return accounts


async def imported(invoice_sessions: async_sessionmaker[AsyncSession]) -> int:
    async with invoice_sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Invoice)) or 0)


async def sync_once(
    shape: Shape,
    sessions: async_sessionmaker[AsyncSession],
    invoice_sessions: async_sessionmaker[AsyncSession],
    control: BillingPlatformControl,
    base_url: str,
    outages: int = 0,
    outage_seconds: float = 0,
) -> float:
    """Seconds from the dispatch to the last invoice's row in the invoice schema."""
    await connect_all(sessions, control, base_url, shape)
    before = await imported(invoice_sessions)
    target = before + shape.total
    marks = [target - shape.total + shape.total * (k + 1) // (outages + 1) for k in range(outages)]
    started = time.monotonic()
    await dispatch_all(sessions, "dispatch")
    last_report = started
    while True:
        count = await imported(invoice_sessions)
        if count >= target:
            return time.monotonic() - started
        if marks and count >= marks[0]:
            marks.pop(0)
            await asyncio.to_thread(control.fault, "error", seconds=outage_seconds)
            say(f"    outage of {outage_seconds:.0f}s at {count - before} invoices")
        if time.monotonic() - last_report > 10:
            last_report = time.monotonic()
            say(f"    {count - before}/{shape.total} after {last_report - started:.0f}s")
        await asyncio.sleep(0.2)


async def bulk_insert(invoice_url: str, shape: Shape) -> float:
    """Seconds to insert the shape's invoices (and 5 clients per owner) straight into MySQL."""
    engine = create_engine(invoice_url, pool_size=1)
    sessions = create_sessionmaker(engine)
    due = date.today() + timedelta(days=30)
    try:
        started = time.monotonic()
        for _owner in range(shape.owners):
            owner = uuid.uuid4()
            async with sessions() as session, session.begin():
                clients = [
                    {
                        "owner_id": owner,
                        "name": f"Client {n}",
                        "email": f"c{n}@example.com",
                        "source": "billing_platform",
                        "external_id": f"cli_{owner.hex}_{n}",
                    }
                    for n in range(5)
                ]
                await session.execute(insert(Client), clients)
                first_client = await session.scalar(
                    select(func.min(Client.id)).where(Client.owner_id == owner)
                )
            assert first_client is not None
            for start in range(0, shape.invoices_each, 1000):
                rows = [
                    {
                        "id": uuid7(),
                        "owner_id": owner,
                        "client_id": first_client + n % 5,
                        "client_name": f"Client {n % 5}",
                        "description": "Services",
                        "amount": Decimal(100 + n % 900),
                        "currency": "USD",
                        "status": "pending",
                        "due_date": due,
                        "source": "billing_platform",
                        "external_id": f"inv_{owner.hex}_{n}",
                        "external_number": f"INV-{n:06d}",
                        "external_status": "pending",
                        "issued_at": utcnow(),
                    }
                    for n in range(start, min(start + 1000, shape.invoices_each))
                ]
                async with sessions() as session, session.begin():
                    await session.execute(insert(Invoice), rows)
        return time.monotonic() - started
    finally:
        await engine.dispose()


@contextlib.contextmanager
def broker(logs: Path) -> Iterator[str]:
    port = free_port()
    process = start_tansu(port, logs / "broker.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.asynccontextmanager
async def schemas() -> AsyncIterator[tuple[str, str, str]]:
    async with (
        temporary_database(MYSQL, "sync_bench") as sync_url,
        temporary_database(MYSQL, "sync_bench_invoice") as invoice_url,
        temporary_database(MYSQL, "sync_bench_bulk") as bulk_url,
    ):
        migrate_schema(ROOT / "services" / "sync" / "alembic.ini", "SYNC", sync_url)
        for url in (invoice_url, bulk_url):
            migrate_schema(ROOT / "services" / "invoice" / "alembic.ini", "INVOICE", url)
        yield sync_url, invoice_url, bulk_url


async def run(args: argparse.Namespace) -> str:
    if args.quick:
        big, many, outage_seconds = Shape("big", 1, 10_000), Shape("many", 100, 100), 3.0
    else:
        big, many, outage_seconds = Shape("big", 1, 100_000), Shape("many", 1000, 100), 10.0
    logs = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    lines = []
    with broker(logs) as bootstrap, BillingPlatformServer() as platform_server:
        control = platform_server.control_client()
        async with schemas() as (sync_url, invoice_url, bulk_url):
            settings = SyncSettings(database_url=SecretStr(sync_url))
            del settings  # parsed once to fail early on a bad setting
            env = worker_env(logs, sync_url, invoice_url, bootstrap)
            engine = create_engine(sync_url, pool_size=2)
            invoice_engine = create_engine(invoice_url, pool_size=2)
            sessions, invoice_sessions = (
                create_sessionmaker(engine),
                create_sessionmaker(invoice_engine),
            )
            with contextlib.ExitStack() as stack:
                for n in range(SYNC_WORKERS):
                    stack.enter_context(
                        logged_process(
                            f"sync-worker-{n}", [sys.executable, "-m", "sync.worker"], env
                        )
                    )
                stack.enter_context(
                    logged_process("invoice-worker", [sys.executable, "-m", "invoice.worker"], env)
                )
                say("warming up (topics, consumer groups) ...")
                await sync_once(
                    Shape("warm", 5, 100),
                    sessions,
                    invoice_sessions,
                    control,
                    platform_server.base_url,
                )
                results = []
                for shape in (big, many):
                    say(f"{shape.owners} owner(s) x {shape.invoices_each} invoices, end to end ...")
                    seconds = await sync_once(
                        shape, sessions, invoice_sessions, control, platform_server.base_url
                    )
                    say(f"{shape.total} invoices in the same shape, bulk-inserted ...")
                    floor = await bulk_insert(bulk_url, shape)
                    results.append((shape, seconds, floor))
                    end_to_end, bulk = shape.total / seconds, shape.total / floor
                    say(f"  {end_to_end:.0f}/s end to end, {bulk:.0f}/s bulk")
                say(f"{many.owners} owners x {many.invoices_each} invoices with three outages ...")
                faulted = await sync_once(
                    Shape("outages", many.owners, many.invoices_each),
                    sessions,
                    invoice_sessions,
                    control,
                    platform_server.base_url,
                    outages=3,
                    outage_seconds=outage_seconds,
                )
            await engine.dispose()
            await invoice_engine.dispose()
    clean_many = results[1][1]
    lines.append(
        f"Sync benchmark, {time.strftime('%Y-%m-%d %H:%M')} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores (shared with other work), {SYNC_WORKERS} sync workers"
    )
    lines.append("")
    lines.append("| shape | end to end | bulk insert | ratio (goal >= 0.5) |")
    lines.append("|---|---|---|---|")
    for shape, seconds, floor in results:
        lines.append(
            f"| {shape.owners} x {shape.invoices_each:,} | {shape.total / seconds:,.0f} invoices/s "
            f"({seconds:.1f} s) | {shape.total / floor:,.0f} rows/s ({floor:.1f} s) | "
            f"{floor / seconds:.2f} |"
        )
    lines.append("")
    expected = clean_many + 3 * outage_seconds
    lines.append(
        f"Three outages of {outage_seconds:.0f} s ({many.owners} x {many.invoices_each}): "
        f"{faulted:.1f} s against clean {clean_many:.1f} s + {3 * outage_seconds:.0f} s = "
        f"{expected:.1f} s: {faulted / expected:.2f}x (goal <= 1.1x)"
    )
    lines.append(f"(logs in {logs})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--output", type=Path, help="also write the figures here")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print()
    print(report)
    if args.output:
        args.output.write_text(report + "\n")


if __name__ == "__main__":
    main()
