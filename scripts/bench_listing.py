"""The listing benchmark of the invoice service: `GET /api/invoices` against the raw query.

Seeds a schema of its own (`invoice_bench` by default) with 1,000,000 invoices, one owner
holding 200,000 of them and the rest spread over 2,000 owners, then measures for every filter
and sort of seed 000's listing, on the first page and on a page 1,000 pages deep:

- the API: requests per second and p50/p95 latency of `GET /api/invoices` over HTTP, served
  by uvicorn (one worker, the service's own app factory), loaded by `wrk`;
- the floor: the very SQL statement the API sends, run through the raw driver (asyncmy) at
  the same concurrency;
- the plan: `EXPLAIN` of that statement uses the listing index and no filesort.

Run with the project's virtual environment: `make bench`, or
`.venv/bin/python scripts/bench_listing.py [--quick] [--reseed]`. The seeded schema is kept
and reused while it is complete; `--reseed` rebuilds it, and
`mariadb -h127.0.0.1 -uroot -e 'DROP DATABASE invoice_bench'` removes it. See
docs/benchmarks.md for the method and the figures.
"""

import argparse
import asyncio
import itertools
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncmy
import httpx
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.ids import uuid7
from common.pagination import CursorCodec
from common.testing.identity import TestIssuer
from invoice import repository, service
from invoice.models import InvoiceStatus
from invoice.repository import InvoiceFilter

ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = ROOT / "services/invoice/alembic.ini"
MYSQL_HOST, MYSQL_PORT, MYSQL_USER = "127.0.0.1", 3306, "root"
CURSOR_SECRET = "bench-cursor-secret"  # noqa: S105 - signs the bench's own cursors only
PAGE_SIZE = 10
DEEP_PAGE = 1000
# Bumped whenever the generator below changes, so an older seed is rebuilt, not reused.
SEED_VERSION = 1
SEED_RANDOM = 20261123
INSERT_BATCH = 5000
# The prefix the client-name filter looks for: lower case, to exercise the case-insensitive
# match; it starts about one client name in eighteen in the generated data.
NAME_PREFIX = "ma"
STATUS_FILTER = InvoiceStatus.PENDING
ORDERS = ("due_date", "client_name", "status")
DIRECTIONS = ("desc", "asc")

# --- the data set -----------------------------------------------------------------------------


def listed(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(","))


SURNAMES = listed(
    "Smith, Johnson, Williams, Brown, Jones, Garcia, Miller, Davis, Rodriguez, Martinez, "
    "Hernandez, Lopez, Gonzalez, Wilson, Anderson, Thomas, Taylor, Moore, Jackson, Martin, Lee, "
    "Perez, Thompson, White, Harris, Sanchez, Clark, Ramirez, Lewis, Robinson, Walker, Young, "
    "Allen, King, Wright, Scott, Torres, Nguyen, Hill, Flores, Green, Adams, Nelson, Baker, Hall, "
    "Rivera, Campbell, Mitchell, Carter, Roberts, Gomez, Phillips, Evans, Turner, Diaz, Parker, "
    "Cruz, Edwards, Collins, Reyes, Stewart, Morris, Morales, Murphy, Cook, Rogers, Gutierrez, "
    "Ortiz, Morgan, Cooper, Peterson, Bailey, Reed, Kelly, Howard, Ramos, Kim, Cox, Ward, "
    "Richardson, Watson, Brooks, Chavez, Wood, James, Bennett, Gray, Mendoza, Ruiz, Hughes, Price, "
    "Alvarez, Castillo, Sanders, Patel, Myers, Long, Ross, Foster, Jimenez, Mahoney, Marsh, "
    "Maxwell, Okafor, Schmidt, Müller, Dubois, Rossi, Yamamoto, Kowalski, Novak, Andersson, "
    "Fischer, O'Brien, Zhang, Singh, Haddad, Ivanova, Santos, Becker, Lindqvist, Costa, Nakamura, "
    "Oyelaran, Duarte, Fontaine, Kaplan, Vasquez"
)
FIRST_NAMES = listed(
    "James, Mary, Robert, Patricia, John, Jennifer, Michael, Linda, David, Elizabeth, William, "
    "Barbara, Richard, Susan, Joseph, Jessica, Thomas, Sarah, Maria, Karen, Daniel, Nancy, "
    "Matthew, Lisa, Anthony, Margaret, Mark, Sandra, Ana, Sofia, Wei, Aisha, Carlos, Olga, Priya, "
    "Hiroshi, Fatima, Lukas, Chloe, Omar, Ingrid, Diego, Amara, Noah, Emma, Liam, Zoe, Ethan, "
    "Grace, Mateo, Leila, Hannah, Felix, Nadia, Oscar"
)
PLACE_NAMES = listed(
    "Acme, Apex, Atlas, Bayview, Brightside, Cedar, Summit, Northwind, Evergreen, Granite, Harbor, "
    "Horizon, Ironwood, Lakeside, Maple, Meridian, Midtown, Pacific, Pinnacle, Redwood, "
    "Riverside, Sterling, Sunrise, Urban, Westside, Metro, Magnolia, Mesa, Crescent, Keystone, "
    "Liberty, Orchard, Prairie, Quantum, Starlight, Willow, Zenith, Tri-County, Copperfield, "
    "Highland, Lighthouse, Beacon, Blue Harbor, Silver Creek, Oak Valley, Golden Gate, "
    "Main Street, Old Town"
)
TRADES = listed(
    "Plumbing, Dental, Consulting, Logistics, Bakery, Design Studio, Landscaping, Auto Repair, "
    "Construction, Catering, Accounting, Law Group, Marketing, Realty, Electric, Fitness, "
    "Veterinary Clinic, Coffee Roasters, Printing, Software, Roofing, Cleaning Services, "
    "Photography, Architects, Florist, Brewing Co., Media, Properties, Supply, Medical Group, "
    "Pharmacy, Tutoring, Events, Interiors, Motors"
)
SUFFIXES = ("", "", "", "", " LLC", " Inc.", " Ltd", " & Sons", " & Co.", " Group", " GmbH")
WORK = listed(
    "Monthly bookkeeping, Website maintenance, Consulting hours, Design retainer, "
    "Office cleaning, Catering order, Equipment rental, Legal advice, Tax preparation, "
    "Landscaping service, IT support, Photography session, Delivery fees, Training workshop, "
    "Software licence, Marketing campaign, Plumbing repair, Translation, Copywriting, "
    "Payroll services"
)
CURRENCIES = (("USD", 70), ("EUR", 12), ("GBP", 8), ("CAD", 6), ("AUD", 4))
MONTHS = listed(
    "January, February, March, April, May, June, July, August, September, October, November, "
    "December"
)


INSERT_CLIENT = (
    "INSERT INTO clients (id, owner_id, name, email, created_at, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
INSERT_INVOICE = (
    "INSERT INTO invoices (id, owner_id, number, client_id, client_name, description, amount,"
    " currency, status, due_date, created_at, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# Each owner's counter at its last number, as the service keeps it for the next invoice.
INSERT_COUNTERS = (
    "INSERT INTO invoice_counters (owner_id, last_number)"
    " SELECT owner_id, COUNT(*) FROM invoices GROUP BY owner_id"
)

Row = tuple[Any, ...]


@dataclass(frozen=True)
class SeedPlan:
    """What the seed holds; a schema is reused only if it was seeded to this very plan."""

    invoices: int
    big_owner_invoices: int
    owners: int  # besides the big owner

    def describe(self) -> str:
        return f"v{SEED_VERSION}:{self.invoices}:{self.big_owner_invoices}:{self.owners}"


@dataclass(frozen=True)
class Seed:
    big_owner: uuid.UUID
    reference_date: date  # the data's "today": earlier due dates are settled or past due
    seconds: float  # how long seeding took
    clients: int


def client_name(rng: random.Random) -> str:
    """A business's or a person's name, in the mix a small business's client list has."""
    pick = rng.random()
    if pick < 0.35:
        return f"{rng.choice(SURNAMES)} {rng.choice(TRADES)}{rng.choice(SUFFIXES)}"
    if pick < 0.65:
        return f"{rng.choice(PLACE_NAMES)} {rng.choice(TRADES)}{rng.choice(SUFFIXES)}"
    if pick < 0.85:
        return f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
    if pick < 0.95:
        return f"{rng.choice(SURNAMES)} & {rng.choice(SURNAMES)} LLP"
    return f"The {rng.choice(PLACE_NAMES)} {rng.choice(TRADES)}"


def owner_sizes(rng: random.Random, total: int, owners: int) -> list[int]:
    """Invoice counts per owner summing to `total`: a few large accounts, many small ones."""
    weights = [rng.lognormvariate(0, 1.0) for _ in range(owners)]
    scale = (total - owners) / sum(weights)
    sizes = [1 + int(w * scale) for w in weights]
    for i in range(total - sum(sizes)):
        sizes[i % owners] += 1
    return sizes


def status_for(rng: random.Random, due: date, today: date) -> str:
    """Mostly paid, some past due or void before today; mostly pending from today on."""
    pick = rng.random()
    if due < today:
        if pick < 0.80:
            return "paid"
        return "past_due" if pick < 0.92 else "void"
    if pick < 0.92:
        return "pending"
    return "paid" if pick < 0.97 else "void"


@dataclass
class Generated:
    big_owner: uuid.UUID
    clients: list[Row]
    invoices: Iterator[list[Row]]  # batches, oldest first, so ids grow as in production


def generate(plan: SeedPlan, today: date) -> Generated:
    """Owners, their clients and their invoices; due dates span two years back, one ahead."""
    rng = random.Random(SEED_RANDOM)
    owner_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(plan.owners + 1)]
    rest = plan.invoices - plan.big_owner_invoices
    sizes = [plan.big_owner_invoices, *owner_sizes(rng, rest, plan.owners)]
    currencies = rng.choices([c for c, _ in CURRENCIES], [w for _, w in CURRENCIES], k=len(sizes))
    clients: list[Row] = []
    names: list[str] = []
    # One entry per invoice: (creation second from the first due day, owner index, client id).
    invoices: list[tuple[int, int, int]] = []
    days = 3 * 365
    for owner_index, size in enumerate(sizes):
        owner = owner_ids[owner_index].bytes
        wanted = 5000 if owner_index == 0 else max(2, min(300, round(size / rng.uniform(6, 15))))
        first_id = len(clients) + 1
        seen: set[str] = set()
        while len(names) - first_id + 1 < wanted:
            name = client_name(rng)
            if name in seen and rng.random() < 0.95:  # a few namesakes, as in real books
                continue
            seen.add(name)
            joined = datetime(2023, 1, 1) + timedelta(minutes=rng.randrange(1_000_000))
            clients.append(
                (
                    len(clients) + 1,
                    owner,
                    name,
                    f"billing{len(clients) + 1}@example.com",
                    joined,
                    joined,
                )
            )
            names.append(name)
        # Some clients are billed far more often than others.
        ranks = list(range(wanted))
        rng.shuffle(ranks)
        cumulative = list(itertools.accumulate(1 / (r + 1) ** 0.9 for r in range(wanted)))
        for pick in rng.choices(ranks, cum_weights=cumulative, k=size):
            second = (rng.randrange(days) - 30) * 86400 + rng.randrange(86400)
            invoices.append((second, owner_index, first_id + pick))
    invoices.sort()
    origin = datetime.combine(today - timedelta(days=730), datetime.min.time())
    midnight = datetime.combine(today, datetime.min.time())

    def batches() -> Iterator[list[Row]]:
        descriptions: dict[tuple[int, int, int], str] = {}
        # Numbers run 1, 2, 3... per owner in creation order, as the service gives them.
        last_numbers = [0] * len(owner_ids)
        for start in range(0, len(invoices), INSERT_BATCH):
            rows: list[Row] = []
            for second, owner_index, client_id in invoices[start : start + INSERT_BATCH]:
                created_at = origin + timedelta(seconds=second)
                due = (created_at + timedelta(days=30)).date()
                work = rng.randrange(len(WORK))
                text = descriptions.setdefault(
                    (work, due.year, due.month), f"{WORK[work]}, {MONTHS[due.month - 1]} {due.year}"
                )
                status = status_for(rng, due, today)
                updated_at = created_at
                if status != "pending":
                    settled = created_at + timedelta(days=rng.randrange(1, 60))
                    updated_at = max(created_at, min(settled, midnight))
                last_numbers[owner_index] += 1
                rows.append(
                    (
                        uuid7().bytes,
                        owner_ids[owner_index].bytes,
                        f"INV-{last_numbers[owner_index]:06d}",
                        client_id,
                        names[client_id - 1],
                        text,
                        f"{min(rng.lognormvariate(6, 1.1), 9_999_999):.2f}",
                        currencies[owner_index],
                        status,
                        due,
                        created_at,
                        updated_at,
                    )
                )
            yield rows

    return Generated(owner_ids[0], clients, batches())


# --- the database -----------------------------------------------------------------------------


def database_url(schema: str) -> str:
    return f"mysql+asyncmy://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{schema}"


async def connect(schema: str | None = None, *, autocommit: bool = True) -> Any:
    """A raw driver connection, as the service's engine opens them (utf8mb4, READ COMMITTED)."""
    connection = await asyncmy.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user=MYSQL_USER,
        database=schema,
        charset="utf8mb4",
        autocommit=autocommit,
    )
    async with connection.cursor() as cursor:
        await cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return connection


async def fetch(connection: Any, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    async with connection.cursor() as cursor:
        await cursor.execute(sql, params)
        return list(await cursor.fetchall())


def migrate(schema: str) -> None:
    """The service's migrations, run the way deployment runs them: alembic, its own process."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ALEMBIC_INI), "upgrade", "head"],
        check=True,
        env={**os.environ, "INVOICE_DATABASE_URL": database_url(schema)},
        capture_output=True,
    )


async def existing_seed(schema: str, plan: SeedPlan) -> Seed | None:
    """The seed in the schema if it is complete and of this plan; `bench_seed` is written last."""
    admin = await connect()
    try:
        found = await fetch(
            admin,
            "SELECT COUNT(*) FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name = 'bench_seed'",
            (schema,),
        )
        if found[0][0] == 0:
            return None
        rows = await fetch(admin, f"SELECT * FROM `{schema}`.bench_seed")  # noqa: S608
        if not rows or rows[0][0] != plan.describe():
            return None
        invoices, clients = [await count(admin, schema, table) for table in ("invoices", "clients")]
        if invoices != plan.invoices:
            return None
        _, owner, reference_date, seconds, _ = rows[0]
        return Seed(uuid.UUID(bytes=bytes(owner)), reference_date, seconds, clients)
    finally:
        admin.close()


async def count(connection: Any, schema: str, table: str) -> int:
    # Identifiers come from this script: the schema name is checked by the argument parser.
    rows = await fetch(connection, f"SELECT COUNT(*) FROM `{schema}`.`{table}`")  # noqa: S608
    return int(rows[0][0])


async def seed(schema: str, plan: SeedPlan) -> Seed:
    """Create and migrate the schema, then load the generated clients and invoices."""
    started = time.perf_counter()
    admin = await connect()
    try:
        exists = await fetch(admin, "SHOW DATABASES LIKE %s", (schema,))
        if exists:
            await fetch(admin, f"DROP DATABASE `{schema}`")
        await fetch(
            admin,
            f"CREATE DATABASE `{schema}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
    finally:
        admin.close()
    migrate(schema)
    today = date.today()
    data = generate(plan, today)
    say(f"generated {len(data.clients):,} clients in {time.perf_counter() - started:.0f} s")
    loaders = [await connect(schema, autocommit=False) for _ in range(2)]
    for loader in loaders:
        await fetch(loader, "SET SESSION foreign_key_checks = 0, unique_checks = 0")
    try:
        deferred = await defer_indexes(loaders[0], schema, "invoices")
        async with loaders[0].cursor() as cursor:
            for start in range(0, len(data.clients), INSERT_BATCH):
                await cursor.executemany(INSERT_CLIENT, data.clients[start : start + INSERT_BATCH])
        await loaders[0].commit()
        # Two connections: one inserts while this process builds the next batch.
        queue: asyncio.Queue[list[Row] | None] = asyncio.Queue(maxsize=2)

        async def load(connection: Any) -> None:
            # After a failure it still empties the queue, so the loop below never waits on a
            # full one; the gather then raises the failure.
            failure: Exception | None = None
            async with connection.cursor() as cursor:
                cursor.max_stmt_length = 4 * 1024 * 1024
                while (rows := await queue.get()) is not None:
                    if failure is not None:
                        continue
                    try:
                        await cursor.executemany(INSERT_INVOICE, rows)
                        await connection.commit()
                    except Exception as exc:
                        failure = exc
            if failure is not None:
                raise failure

        workers = [asyncio.create_task(load(loader)) for loader in loaders]
        loaded = 0
        for rows in data.invoices:
            await queue.put(rows)
            loaded += len(rows)
            if loaded % 100_000 == 0:
                say(f"  {loaded:,} invoices queued, {time.perf_counter() - started:.0f} s")
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        say(f"  loaded, building the deferred indexes, {time.perf_counter() - started:.0f} s")
        await deferred.restore()
        await fetch(loaders[0], INSERT_COUNTERS)
        await fetch(loaders[0], "ANALYZE TABLE clients, invoices")
        seconds = time.perf_counter() - started
        await fetch(
            loaders[0],
            "CREATE TABLE bench_seed (plan VARCHAR(100) NOT NULL, big_owner BINARY(16) NOT NULL,"
            " reference_date DATE NOT NULL, seconds DOUBLE NOT NULL, seeded_at DATETIME NOT NULL)",
        )
        await fetch(
            loaders[0],
            "INSERT INTO bench_seed VALUES (%s, %s, %s, %s, NOW())",
            (plan.describe(), data.big_owner.bytes, today, seconds),
        )
        await loaders[0].commit()
    finally:
        for loader in loaders:
            loader.close()
    return Seed(data.big_owner, today, seconds, len(data.clients))


class DeferredIndexes:
    """A table's secondary indexes, dropped for a bulk load and built again after it.

    Inserting a million rows into seven secondary indexes larger than the buffer pool is
    random I/O; building each index afterwards is one sort. The definitions are read from the
    migrated table and the table must come back exactly as the migrations made it.
    """

    def __init__(self, connection: Any, table: str, indexes: dict[str, str], ddl: str) -> None:
        self.connection = connection
        self.table = table
        self.indexes = indexes
        self.ddl = ddl

    async def restore(self) -> None:
        if self.indexes:
            added = ", ".join(f"ADD INDEX `{n}` ({cols})" for n, cols in self.indexes.items())
            await fetch(self.connection, f"ALTER TABLE `{self.table}` {added}")
        ddl = (await fetch(self.connection, f"SHOW CREATE TABLE `{self.table}`"))[0][1]
        if sorted(ddl.splitlines()) != sorted(self.ddl.splitlines()):  # index order aside
            raise RuntimeError(f"{self.table} differs from its migrated definition:\n{ddl}")


async def defer_indexes(connection: Any, schema: str, table: str) -> DeferredIndexes:
    """Drop the table's non-unique secondary indexes, except those backing a foreign key."""
    ddl = (await fetch(connection, f"SHOW CREATE TABLE `{table}`"))[0][1]
    rows = await fetch(
        connection,
        "SELECT index_name, column_name, sub_part, collation FROM information_schema.statistics"
        " WHERE table_schema = %s AND table_name = %s AND non_unique = 1"
        " ORDER BY index_name, seq_in_index",
        (schema, table),
    )
    references = await fetch(
        connection,
        "SELECT column_name FROM information_schema.key_column_usage"
        " WHERE table_schema = %s AND table_name = %s AND referenced_table_name IS NOT NULL",
        (schema, table),
    )
    foreign_keys = {column for (column,) in references}
    columns: dict[str, list[str]] = {}
    for name, column, sub_part, collation in rows:
        length = f"({sub_part})" if sub_part else ""
        columns.setdefault(name, []).append(
            f"`{column}`{length}" + (" DESC" if collation == "D" else "")
        )
    indexes = {
        name: ", ".join(cols)
        for name, cols in columns.items()
        if cols[0].split("`")[1] not in foreign_keys
    }
    if indexes:
        dropped = ", ".join(f"DROP INDEX `{name}`" for name in indexes)
        await fetch(connection, f"ALTER TABLE `{table}` {dropped}")
    return DeferredIndexes(connection, table, indexes, ddl)


# --- what is measured -------------------------------------------------------------------------


@dataclass(frozen=True)
class Combo:
    filters: InvoiceFilter
    order_by: str
    order_dir: str

    @property
    def filter_label(self) -> str:
        f = self.filters
        parts = [
            name
            for name, value in (
                ("status", f.status),
                ("name", f.client_name_prefix),
                ("due", f.due_date),
            )
            if value is not None
        ]
        return " + ".join(parts) or "none"

    @property
    def order_label(self) -> str:
        return f"{self.order_by} {self.order_dir}"

    def query(self, cursor: str | None = None) -> dict[str, str]:
        f = self.filters
        params = {
            "client_name": f.client_name_prefix,
            "status": f.status.value if f.status is not None else None,
            "due_date": f.due_date.isoformat() if f.due_date is not None else None,
            "order_by": self.order_by,
            "order_dir": self.order_dir,
            "limit": str(PAGE_SIZE),
            "cursor": cursor,
        }
        return {name: value for name, value in params.items() if value is not None}


def filter_sets(seed: Seed) -> list[InvoiceFilter]:
    """No filter, each filter alone, each pair, all three."""
    due = seed.reference_date + timedelta(days=14)
    sets = []
    for status, name, by_due in itertools.product((False, True), repeat=3):
        sets.append(
            InvoiceFilter(
                client_name_prefix=NAME_PREFIX if name else None,
                status=STATUS_FILTER if status else None,
                due_date=due if by_due else None,
            )
        )
    return sorted(sets, key=lambda f: sum(v is not None for v in vars(f).values()))


def combos(seed: Seed, quick: bool) -> list[Combo]:
    if quick:
        return [Combo(f, "due_date", "desc") for f in filter_sets(seed)]
    return [
        Combo(f, order_by, order_dir)
        for f in filter_sets(seed)
        for order_by in ORDERS
        for order_dir in DIRECTIONS
    ]


# --- CPU accounting: what a request costs, and whether other work disturbed a measurement ----


def process_ticks() -> dict[int, tuple[str, int]]:
    """Every process's name and CPU ticks so far (its own and its reaped children's)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 2 :].split()
        # utime, stime, cutime, cstime: fields 14 to 17 of proc(5), 11 to 14 after the name.
        found[int(entry.name)] = (name, sum(int(v) for v in fields[11:15]))
    return found


@dataclass(frozen=True)
class CpuUse:
    server: float  # seconds of CPU of the process serving the load (uvicorn, or this one)
    database: float  # seconds of CPU of MariaDB
    foreign: float  # cores used meanwhile by everything else
    busiest: str  # the other process that used the most


class CpuWatch:
    """CPU used during a measurement by the server under load, by MariaDB, and by the rest of
    the machine (the rest is a disturbance: this machine is shared). MariaDB work done for
    someone else cannot be told apart and counts as MariaDB's."""

    def __init__(self, api_pid: int) -> None:
        self.api_pid = api_pid
        self.hz = os.sysconf("SC_CLK_TCK")
        self.mariadb = {
            pid for pid, (name, _) in process_ticks().items() if name in ("mariadbd", "mysqld")
        }

    def start(self) -> None:
        self._began = (time.monotonic(), process_ticks())

    def stop(self, server_pid: int) -> CpuUse:
        began_at, before = self._began
        after = process_ticks()
        elapsed = max(time.monotonic() - began_at, 1e-6)
        ours = {os.getpid(), self.api_pid, *self.mariadb}
        used = {pid: ticks - before.get(pid, ("", 0))[1] for pid, (_, ticks) in after.items()}
        others = {
            pid: ticks
            for pid, ticks in used.items()
            if pid not in ours and not after[pid][0].startswith("ksoftirqd")
        }
        busiest = max(others, key=lambda pid: others[pid], default=None)
        return CpuUse(
            server=used.get(server_pid, 0) / self.hz,
            database=sum(used.get(pid, 0) for pid in self.mariadb) / self.hz,
            foreign=sum(others.values()) / self.hz / elapsed,
            busiest=after[busiest][0] if busiest is not None and others[busiest] > 0 else "",
        )


# --- load -------------------------------------------------------------------------------------

WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("LEDGERLINE %d %d %.0f %.0f %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(95),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
LIVENESS = "/health/live"
DISTURBED = 0.25  # cores used by other work during a round before the round is taken again


@dataclass(frozen=True)
class Run:
    """One round of load on one page."""

    requests: int
    seconds: float
    p50_ms: float
    p95_ms: float
    cpu: CpuUse


@dataclass(frozen=True)
class Measure:
    """A page's rounds together: the rate over all of them, the median round's latencies."""

    runs: tuple[Run, ...]

    @property
    def rps(self) -> float:
        return sum(r.requests for r in self.runs) / sum(r.seconds for r in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p95_ms(self) -> float:
        return statistics.median(r.p95_ms for r in self.runs)

    @property
    def cpu_ms(self) -> float:
        """CPU of the serving process per request."""
        return 1000 * sum(r.cpu.server for r in self.runs) / sum(r.requests for r in self.runs)

    @property
    def db_cpu_ms(self) -> float:
        return 1000 * sum(r.cpu.database for r in self.runs) / sum(r.requests for r in self.runs)

    @property
    def foreign(self) -> float:
        return max(r.cpu.foreign for r in self.runs)


def percentile(sorted_values: list[float], pct: float) -> float:
    return sorted_values[max(0, math.ceil(pct / 100 * len(sorted_values)) - 1)]


@dataclass(frozen=True)
class Statement:
    """One page's SQL exactly as the service sent it to the driver."""

    sql: str
    params: tuple[Any, ...]


@dataclass
class PageResult:
    number: int
    url: str
    statement: Statement
    plan: str = ""
    plan_ok: bool = False
    api: Measure | None = None
    raw: Measure | None = None


@dataclass
class ComboResult:
    combo: Combo
    matching: int
    first: PageResult
    deep: PageResult


@dataclass
class Bench:
    schema: str
    seed: Seed
    concurrency: int
    seconds: int
    rounds: int
    base_url: str
    token: str
    lua: Path
    raw: list[Any]
    api_pid: int
    watch: CpuWatch
    sessionmaker: async_sessionmaker[AsyncSession]
    codec: CursorCodec
    http: httpx.AsyncClient
    captured: list[Statement]

    async def wrk(self, url: str, seconds: int) -> tuple[int, float, float, float]:
        process = await asyncio.create_subprocess_exec(
            "wrk",
            "-t1",
            f"-c{self.concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-H",
            f"Authorization: Bearer {self.token}",
            "-s",
            str(self.lua),
            self.base_url + url,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await process.communicate()
        line = next((x for x in out.decode().splitlines() if x.startswith("LEDGERLINE ")), None)
        if process.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed: {err.decode()}{out.decode()}")
        requests, micros, p50, p95, errors = (float(v) for v in line.split()[1:])
        if errors:
            raise RuntimeError(f"{errors:.0f} of {requests:.0f} requests failed on {url}")
        return int(requests), micros / 1e6, p50 / 1000, p95 / 1000

    async def api_round(self, page: PageResult) -> Run:
        return await self.url_round(page.url)

    async def url_round(self, url: str) -> Run:
        self.watch.start()
        requests, seconds, p50, p95 = await self.wrk(url, self.seconds)
        return Run(requests, seconds, p50, p95, self.watch.stop(self.api_pid))

    async def framework_floor(self) -> Measure:
        """The same app's liveness endpoint under the same load: the same server and
        middleware with no token, no query and no model. No endpoint of this app can be
        faster, so it bounds what the listing could reach."""
        await self.wrk(LIVENESS, 1)
        runs = [
            await steady(lambda: self.url_round(LIVENESS), LIVENESS) for _ in range(self.rounds)
        ]
        return Measure(tuple(runs))

    async def _drive(self, statement: Statement, seconds: float) -> tuple[float, list[float]]:
        """The statement in a loop on each raw connection at once, for `seconds`."""
        latencies: list[float] = []
        stop = time.perf_counter() + seconds

        async def loop(connection: Any) -> None:
            async with connection.cursor() as cursor:
                while (began := time.perf_counter()) < stop:
                    await cursor.execute(statement.sql, statement.params)
                    await cursor.fetchall()
                    latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(loop(c) for c in self.raw))
        return time.perf_counter() - began, latencies

    async def raw_round(self, page: PageResult) -> Run:
        self.watch.start()
        elapsed, latencies = await self._drive(page.statement, self.seconds)
        cpu = self.watch.stop(os.getpid())
        latencies.sort()
        p50, p95 = (percentile(latencies, pct) * 1000 for pct in (50, 95))
        return Run(len(latencies), elapsed, p50, p95, cpu)

    async def warm_up(self, page: PageResult) -> None:
        await self.wrk(page.url, 1)
        await self._drive(page.statement, 0.3)


async def steady(take: Any, label: str) -> Run:
    """A round, taken again (up to twice) when other work used the CPU meanwhile; the least
    disturbed one is kept."""
    best: Run = await take()
    for _ in range(2):
        if best.cpu.foreign < DISTURBED:
            break
        say(
            f"    {label}: other work used {best.cpu.foreign:.2f} cores"
            f" (most: {best.cpu.busiest or '?'}), taking the round again"
        )
        again: Run = await take()
        if again.cpu.foreign < best.cpu.foreign:
            best = again
    return best


async def measure(bench: Bench, result: ComboResult) -> None:
    """Rounds that alternate the first and the deep page, API then raw, so a slow spell of
    the machine touches both pages alike rather than skewing their ratio."""
    pages = (("first", result.first), ("deep", result.deep))
    for _, page in pages:
        await bench.warm_up(page)
    api: dict[str, list[Run]] = {name: [] for name, _ in pages}
    raw: dict[str, list[Run]] = {name: [] for name, _ in pages}
    label = f"{result.combo.filter_label} / {result.combo.order_label}"
    for _ in range(bench.rounds):
        for name, page in pages:
            api[name].append(await steady(lambda p=page: bench.api_round(p), f"{label} {name} API"))
        for name, page in pages:
            raw[name].append(await steady(lambda p=page: bench.raw_round(p), f"{label} {name} raw"))
    for name, page in pages:
        page.api, page.raw = Measure(tuple(api[name])), Measure(tuple(raw[name]))


async def position(bench: Bench, combo: Combo, rows_before: int) -> tuple[str | None, Statement]:
    """The cursor after `rows_before` rows, found by paging through the service itself (100
    rows a step: a cursor marks a row, whatever the page size it came with), and the SQL the
    service sends for the 10-row page that follows it."""
    cursor = None
    async with bench.sessionmaker() as session:
        while rows_before > 0:
            step = min(100, rows_before)
            request = service.ListRequest(
                combo.filters, combo.order_by, combo.order_dir, step, cursor
            )
            page = await service.list_invoices(session, bench.codec, bench.seed.big_owner, request)
            if page.next_cursor is None:
                raise RuntimeError(f"{combo}: the listing ended before its deep page")
            cursor = page.next_cursor
            rows_before -= step
            session.expunge_all()
        bench.captured.clear()
        request = service.ListRequest(
            combo.filters, combo.order_by, combo.order_dir, PAGE_SIZE, cursor
        )
        await service.list_invoices(session, bench.codec, bench.seed.big_owner, request)
    (statement,) = bench.captured
    return cursor, statement


async def explain(bench: Bench, combo: Combo, statement: Statement) -> tuple[str, bool]:
    """The plan's index and access type; right when it is the listing index, no filesort."""
    rows = await fetch(bench.raw[0], "EXPLAIN " + statement.sql, statement.params)
    (_, _, _, access, _, key, _, _, _, extra) = rows[0][:10]
    expected = repository.listing_index(combo.order_by, combo.filters)
    extra = extra or ""
    ok = len(rows) == 1 and key == expected and "filesort" not in extra and "temporary" not in extra
    short = str(key).removeprefix("ix_invoices_")
    return f"{short} ({access}{'' if ok else ', ' + extra})", ok


async def check_page(bench: Bench, page: PageResult) -> None:
    """The API's page over HTTP is the raw statement's page: same rows, same order."""
    rows = await fetch(bench.raw[0], page.statement.sql, page.statement.params)
    response = await bench.http.get(page.url)
    response.raise_for_status()
    got = [item["id"] for item in response.json()["items"]]
    want = [str(uuid.UUID(bytes=bytes(row[0]))) for row in rows[:PAGE_SIZE]]
    if got != want or not got:
        raise RuntimeError(f"{page.url}: the API's page differs from the raw query's")


async def matching_count(bench: Bench, filters: InvoiceFilter) -> int:
    """How many of the big owner's invoices the filters select: the listing without a limit."""
    listing = repository.invoice_listing(
        bench.seed.big_owner, filters, "due_date", True, None, 10**9
    )
    counting = select(func.count()).select_from(listing.statement.subquery())
    async with bench.sessionmaker() as session:
        found = await session.scalar(counting, listing.params)
    return int(found or 0)


async def measure_combo(bench: Bench, combo: Combo, matching: int) -> ComboResult:
    last_page = max(1, math.ceil(matching / PAGE_SIZE))
    deep_number = min(DEEP_PAGE, last_page)
    _, first_statement = await position(bench, combo, 0)
    cursor, deep_statement = await position(bench, combo, (deep_number - 1) * PAGE_SIZE)
    path = "/api/invoices?"
    result = ComboResult(
        combo,
        matching,
        PageResult(1, path + urlencode(combo.query()), first_statement),
        PageResult(deep_number, path + urlencode(combo.query(cursor)), deep_statement),
    )
    for page in (result.first, result.deep):
        page.plan, page.plan_ok = await explain(bench, combo, page.statement)
        await check_page(bench, page)
    await measure(bench, result)
    return result


# --- the report -------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def deep_label(result: ComboResult) -> str:
    if result.deep.number == DEEP_PAGE:
        return str(DEEP_PAGE)
    if result.deep.number == 1:
        return "1 (only page)"
    return f"{result.deep.number} (last)"


def taken(measure: Measure | None) -> Measure:
    if measure is None:
        raise RuntimeError("a page was reported before it was measured")
    return measure


def ratio(page: PageResult) -> float:
    return taken(page.api).rps / taken(page.raw).rps


def deep_ratio(result: ComboResult) -> float:
    return taken(result.deep.api).p95_ms / taken(result.first.api).p95_ms


def disturbed(result: ComboResult) -> bool:
    pages = (result.first, result.deep)
    return any(taken(m).foreign >= DISTURBED for p in pages for m in (p.api, p.raw))


def table(results: list[ComboResult]) -> str:
    lines = [
        "| filters | order | deep page | API rps first / deep | raw rps first / deep "
        "| API/raw first / deep | first p50 / p95 ms | deep p50 / p95 ms | deep/first p95 "
        "| plan (first; deep) |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        f, d = r.first, r.deep
        fa, fr, da, dr = taken(f.api), taken(f.raw), taken(d.api), taken(d.raw)
        marks = "*" if disturbed(r) else ""
        plan = f.plan if f.plan == d.plan else f"{f.plan}; {d.plan}"
        if not (f.plan_ok and d.plan_ok):
            plan = "**" + plan + "**"
        lines.append(
            f"| {r.combo.filter_label} | {r.combo.order_label} | {deep_label(r)} "
            f"| {fa.rps:,.0f} / {da.rps:,.0f}{marks} | {fr.rps:,.0f} / {dr.rps:,.0f} "
            f"| {ratio(f):.2f} / {ratio(d):.2f} "
            f"| {fa.p50_ms:.1f} / {fa.p95_ms:.1f} | {da.p50_ms:.1f} / {da.p95_ms:.1f} "
            f"| {deep_ratio(r):.2f} | {plan} |"
        )
    return "\n".join(lines)


def costs(results: list[ComboResult]) -> str:
    """Where the time goes: CPU per request of the API process and of the raw client, MariaDB's
    CPU per request under each, and the raw query's own latency."""
    lines = [
        "| filters | order | API CPU ms/req first / deep | raw client CPU ms/query first / deep "
        "| MariaDB CPU ms/req API / raw (first) | raw p50 / p95 ms first | raw p50 / p95 ms deep |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        fa, fr, da, dr = (
            taken(r.first.api),
            taken(r.first.raw),
            taken(r.deep.api),
            taken(r.deep.raw),
        )
        lines.append(
            f"| {r.combo.filter_label} | {r.combo.order_label} "
            f"| {fa.cpu_ms:.2f} / {da.cpu_ms:.2f} | {fr.cpu_ms:.3f} / {dr.cpu_ms:.3f} "
            f"| {fa.db_cpu_ms:.3f} / {fr.db_cpu_ms:.3f} "
            f"| {fr.p50_ms:.2f} / {fr.p95_ms:.2f} | {dr.p50_ms:.2f} / {dr.p95_ms:.2f} |"
        )
    return "\n".join(lines)


def summary(results: list[ComboResult]) -> str:
    pages = [(r, p) for r in results for p in (r.first, r.deep)]
    rate = sorted(ratio(p) for _, p in pages)
    rate_met = sum(v >= 0.5 for v in rate)
    depth = sorted(deep_ratio(r) for r in results)
    depth_met = sum(v <= 1.5 for v in depth)
    plans = sum(p.plan_ok for _, p in pages)
    api_p95 = sorted(taken(p.api).p95_ms for _, p in pages)
    raw_p95 = sorted(taken(p.raw).p95_ms for _, p in pages)
    lines = [
        f"- API reaches half the raw rate: {rate_met} of {len(rate)} pages "
        f"(API/raw min {rate[0]:.2f}, median {statistics.median(rate):.2f}, "
        f"max {rate[-1]:.2f}).",
        f"- Deep page p95 within 1.5x the first page's: {depth_met} of {len(depth)} combinations "
        f"(deep/first min {depth[0]:.2f}, median {statistics.median(depth):.2f}, "
        f"max {depth[-1]:.2f}).",
        f"- EXPLAIN: {plans} of {len(pages)} statements read the listing index in order, "
        "without filesort or temporary table.",
        f"- API p95 over all pages: median {statistics.median(api_p95):.1f} ms, "
        f"max {api_p95[-1]:.1f} ms; raw query p95: median {statistics.median(raw_p95):.1f} ms, "
        f"max {raw_p95[-1]:.1f} ms.",
    ]
    shaken = [f"{r.combo.filter_label} / {r.combo.order_label}" for r in results if disturbed(r)]
    if shaken:
        lines.append(
            f"- \\* other work took over {DISTURBED} of a core during a measurement of: "
            + "; ".join(shaken)
        )
    misses = [
        f"{r.combo.filter_label} / {r.combo.order_label} ({deep_ratio(r):.2f})"
        for r in results
        if deep_ratio(r) > 1.5
    ]
    if misses:
        lines.append("- Deep page over 1.5x: " + "; ".join(misses))
    return "\n".join(lines)


def framework_line(results: list[ComboResult], floor: Measure) -> str:
    pages = [p for r in results for p in (r.first, r.deep)]
    raw = statistics.median(taken(p.raw).rps for p in pages)
    api = statistics.median(taken(p.api).rps for p in pages)
    return (
        f"- Framework floor: `{LIVENESS}` of the same app (same server and middleware; no "
        f"token, no query) serves {floor.rps:,.0f} rps at {floor.cpu_ms:.2f} ms of CPU per "
        f"request, {floor.rps / raw:.2f} of the median raw rate ({raw:,.0f}); the listing's "
        f"median is {api:,.0f} rps."
    )


def machine(bench: Bench, mariadb: list[Row]) -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    version, pool = mariadb[0]
    return (
        f"{os.cpu_count()} cores ({model}); MariaDB {version}, buffer pool "
        f"{int(pool) // 2**20} MiB; Python {platform.python_version()}; "
        f"uvicorn, 1 worker; wrk -t1 -c{bench.concurrency}; raw floor: asyncmy, "
        f"{bench.concurrency} connections; per page {bench.rounds} rounds of {bench.seconds} s "
        "(API and raw, first and deep page alternating) after a warm-up"
    )


# --- the run ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(schema: str, issuer: TestIssuer, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The service as deployment runs it: uvicorn, the app factory, one worker, env settings.
    Startup does not connect to Kafka and the listing never publishes, so no broker is needed
    (KAFKA_BOOTSTRAP_SERVERS keeps its default)."""
    env = {
        **os.environ,
        "INVOICE_DATABASE_URL": database_url(schema),
        "INVOICE_CURSOR_SECRET": CURSOR_SECRET,
        "AUTH_JWKS_URL": issuer.jwks_url,
        "AUTH_ISSUER": issuer.issuer,
        "LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "invoice.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


async def wait_until_live(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                if (await client.get(base_url + LIVENESS)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the API did not come up; its output:\n{tail(log)}")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk (Debian/Ubuntu)")


def workspace() -> tuple[Path, Path]:
    """A directory for the API's log and wrk's reporting script."""
    directory = Path(tempfile.mkdtemp(prefix="bench-listing-"))
    (directory / "report.lua").write_text(WRK_SCRIPT)
    return directory / "api.log", directory / "report.lua"


async def run(args: argparse.Namespace) -> str:
    began = time.perf_counter()
    plan = SeedPlan(args.invoices, args.big_owner_invoices, args.owners)
    seeded = None if args.reseed else await existing_seed(args.schema, plan)
    if seeded is None:
        say(f"seeding {args.schema}: {plan.invoices:,} invoices ...")
        seeded = await seed(args.schema, plan)
        say(f"seeded in {seeded.seconds:.0f} s")
    else:
        say(f"reusing {args.schema} (seeded in {seeded.seconds:.0f} s; --reseed rebuilds it)")
        migrate(args.schema)  # the service may have gained migrations since the seed
    issuer = TestIssuer().start()
    port = free_port()
    log, lua = workspace()
    api = start_api(args.schema, issuer, port, log)
    engine = create_engine(database_url(args.schema), pool_size=1)
    captured: list[Statement] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _capture(_c: Any, _cur: Any, sql: str, params: Any, _ctx: Any, _many: bool) -> None:
        if sql.lstrip().upper().startswith("SELECT INVOICES."):
            captured.append(Statement(sql, tuple(params)))

    raw = [await connect(args.schema) for _ in range(args.concurrency)]
    base_url = f"http://127.0.0.1:{port}"
    try:
        await wait_until_live(base_url, api, log)
        token = issuer.token(seeded.big_owner, exp=int(time.time()) + 6 * 3600)
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http:
            bench = Bench(
                schema=args.schema,
                seed=seeded,
                concurrency=args.concurrency,
                seconds=args.seconds,
                rounds=1 if args.quick else args.rounds,
                base_url=base_url,
                token=token,
                lua=lua,
                raw=raw,
                api_pid=api.pid,
                watch=CpuWatch(api.pid),
                sessionmaker=create_sessionmaker(engine),
                codec=CursorCodec(CURSOR_SECRET.encode()),
                http=http,
                captured=captured,
            )
            counts = {}
            for filters in filter_sets(seeded):
                counts[filters] = await matching_count(bench, filters)
            todo = combos(seeded, args.quick)
            results: list[ComboResult] = []
            for n, combo in enumerate(todo, 1):
                say(f"[{n}/{len(todo)}] {combo.filter_label} / {combo.order_label}")
                result = await measure_combo(bench, combo, counts[combo.filters])
                say(
                    f"    API {taken(result.first.api).rps:,.0f} rps, raw "
                    f"{taken(result.first.raw).rps:,.0f}; API/raw {ratio(result.first):.2f}; "
                    f"deep/first p95 {deep_ratio(result):.2f}"
                )
                results.append(result)
            say(f"{LIVENESS} of the same app ...")
            floor = await bench.framework_floor()
            mariadb = await fetch(raw[0], "SELECT VERSION(), @@innodb_buffer_pool_size")
            report = render(bench, results, floor, counts, mariadb, time.perf_counter() - began)
    finally:
        for connection in raw:
            connection.close()
        await engine.dispose()
        api.send_signal(signal.SIGTERM)
        try:
            api.wait(timeout=15)
        except subprocess.TimeoutExpired:
            api.kill()
        issuer.stop()
        shutil.rmtree(log.parent, ignore_errors=True)  # a failed start quotes the log's tail
    return report


def render(
    bench: Bench,
    results: list[ComboResult],
    floor: Measure,
    counts: dict[InvoiceFilter, int],
    mariadb: list[Row],
    elapsed: float,
) -> str:
    big = bench.seed
    filters = "\n".join(
        f"| {Combo(f, 'due_date', 'desc').filter_label} | {n:,} | {math.ceil(n / PAGE_SIZE):,} |"
        for f, n in counts.items()
    )
    return f"""## Listing benchmark

Machine: {machine(bench, mariadb)}.

Code: {code_version()}.

Data: schema `{bench.schema}`, seeded in {big.seconds:.0f} s, {big.clients:,} clients; the
big owner `{big.big_owner}` (data as of {big.reference_date}). Filters: status =
`{STATUS_FILTER.value}`, name = client_name prefix `{NAME_PREFIX}`, due = due_date
`{big.reference_date + timedelta(days=14)}`. Pages of {PAGE_SIZE}.

| filters | the big owner's invoices matching | pages |
|---|--:|--:|
{filters}

{table(results)}

{summary(results)}

{framework_line(results, floor)}

Costs per request (first page unless marked):

{costs(results)}

Run time {elapsed / 60:.1f} min.
"""


def code_version() -> str:
    """The commit measured, and whether the service's code differed from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "services/invoice/src", "libs/common/src"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.split("\n")
    edited = [line[3:] for line in changed if line.strip()]
    if not edited:
        return f"commit {head or 'unknown'}"
    return f"commit {head}, with uncommitted changes in " + ", ".join(edited)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reseed", action="store_true", help="rebuild the seeded schema")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: the default sort only, one round"
    )
    parser.add_argument("--schema", default="invoice_bench", type=schema_name)
    parser.add_argument("--seconds", type=int, default=1, help="length of one round of load")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per page (--quick: 1)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--big-owner-invoices", type=int, default=200_000)
    parser.add_argument("--owners", type=int, default=2000, help="owners besides the big one")
    parser.add_argument("--output", help="also write the markdown report to this file")
    args = parser.parse_args()
    require_wrk()
    # A terminated run still stops the API it started (the `finally` in `run`).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # The API runs on uvloop (uvicorn picks it when installed); so does the raw floor.
    try:
        import uvloop
    except ImportError:
        report = asyncio.run(run(args))
    else:
        report = uvloop.run(run(args))
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n")


def schema_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", text):
        raise argparse.ArgumentTypeError("letters, digits and underscores only")
    return text


if __name__ == "__main__":
    main()
