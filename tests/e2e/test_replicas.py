"""The suite at two replicas of every API and worker (`make run SCALE=2`), proved on a suite of
its own: its own broker, schemas and processes, since these tests kill processes.

- The gateway spreads requests over both replicas of an API. A replica killed under load
  costs only the answers it had begun to send: the reads it held move on to the other, and
  nothing is sent to a replica that is gone, whatever the method
  (tests/e2e/test_gateway_replicas.py covers a POST held by a dying replica).
- A service's two workers split its topics' partitions in one consumer group; when one is
  killed, the other takes its partitions over and every event is handled, once.
- Of two payment workers, one starts each monthly billing run, and every invoice it charges is
  charged once.
"""

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from common.db import create_engine
from common.kafka import ensure_topics
from common.outbox import _partition
from common.testing.plugin import migrate_schema, stop_all, temporary_database
from common.testing.s3 import S3Server
from common.testing.servers import MysqlServer, find_kafka, wait_for_port
from common.testing.suite import PDF_BUCKET, SERVICES, Suite, run_suite
from simulators.mail_testing import MailProvidersServer
from simulators.testing import FakePayControl

from .conftest import SignedIn, sign_in

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")),
    reason="a named broker is shared: this suite's consumer groups would mix with the others'",
)

REPLICAS = 2
# invoice.events, made before the workers start, with more partitions than workers.
INVOICE_PARTITIONS = 4
PAYMENT_GROUP = "payment-service"
CARD = {"number": "4242 4242 4242 4242", "name": "Acme Ltd", "expiry": "01-2040"}


@pytest.fixture(scope="module")
async def broker() -> AsyncIterator[str]:
    stack: list[Any] = []
    try:
        bootstrap = find_kafka(stack)
        await ensure_topics(bootstrap, ["invoice.events"], partitions=INVOICE_PARTITIONS)
        yield bootstrap
    finally:
        stop_all(stack)


@pytest.fixture(scope="module")
async def schemas(mysql_server: MysqlServer) -> AsyncIterator[dict[str, str]]:
    async with contextlib.AsyncExitStack() as stack:
        urls = {}
        for service in SERVICES:
            url = await stack.enter_async_context(
                temporary_database(mysql_server, f"e2e2_{service.name}")
            )
            migrate_schema(service.alembic_ini, service.prefix, url)
            urls[service.name] = url
        yield urls


@pytest.fixture(scope="module")
def pair(
    schemas: dict[str, str], broker: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Suite]:
    """Two of every API and worker behind one gateway. The payment workers run a billing run
    every minute (a tick every 2 s), so a test sees one start without waiting for a month."""

    def environment(name: str) -> dict[str, str]:
        if name.startswith("payment-worker"):
            return {"PAYMENT_BILLING_SCHEDULE": "* * * * *", "PAYMENT_BILLING_TICK_SECONDS": "2"}
        return {}

    with S3Server() as storage, MailProvidersServer() as mail:
        storage.client().create_bucket(Bucket=PDF_BUCKET)
        with run_suite(
            databases=schemas,
            kafka_bootstrap=broker,
            storage=storage,
            mail=mail,
            logs=tmp_path_factory.mktemp("replicas-logs"),
            replicas=REPLICAS,
            environment=environment,
        ) as running:
            yield running


@pytest.fixture
async def signed_in(pair: Suite) -> AsyncIterator[Callable[[str], Awaitable[SignedIn]]]:
    opened: list[httpx.AsyncClient] = []

    async def sign_in_one(subject: str) -> SignedIn:
        browser = httpx.AsyncClient(timeout=30)
        opened.append(browser)
        tokens = await sign_in(pair, browser, subject)
        api = httpx.AsyncClient(
            base_url=pair.gateway,
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=30,
        )
        opened.append(api)
        return SignedIn(str(tokens["user_id"]), tokens["access_token"], "", api)

    yield sign_in_one
    for client in opened:
        await client.aclose()


# --- reading what the processes did -----------------------------------------------------------


def log_events(suite: Suite, process: str, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of one process whose event is `event`, in order."""
    found = []
    path = suite.logs / f"{process}.log"
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        if not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == event:
                found.append(entry)
    return found


def assigned(suite: Suite, worker: str, topic: str) -> set[int]:
    """The partitions of `topic` the payment group last gave this worker."""
    entries = [
        e
        for e in log_events(suite, worker, "partitions_assigned")
        if e["consumer"] == PAYMENT_GROUP
    ]
    if not entries:
        return set()
    return {
        int(name.rsplit(":", 1)[1])
        for name in entries[-1]["partitions"]
        if name.rsplit(":", 1)[0] == topic
    }


def access_log(suite: Suite) -> list[dict[str, Any]]:
    lines = (suite.logs / "gateway" / "access.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f} s: {what}")
        await asyncio.sleep(1)


async def query(suite: Suite, service: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(suite.databases[service], pool_size=1)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


async def new_client(user: SignedIn, name: str) -> int:
    response = await user.api.post(
        "/api/clients", json={"name": name, "email": f"ap@{uuid.uuid4().hex[:8]}.example"}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def new_invoice(user: SignedIn, client_id: int, **fields: Any) -> str:
    response = await user.api.post(
        "/api/invoices",
        json={"client_id": client_id, "description": "Monthly retainer", "amount": "42.00"}
        | fields,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# --- the tests --------------------------------------------------------------------------------


async def test_one_worker_starts_each_billing_run_and_every_invoice_is_charged_once(
    pair: Suite, signed_in: Any
) -> None:
    owner = await signed_in(f"billing-{uuid.uuid4().hex[:8]}@example.com")
    client_id = await new_client(owner, "Acme Ltd")
    saved = await owner.api.post(
        "/api/payment-methods",
        json={"client_id": client_id, "card": CARD, "autopay_consent": True},
    )
    assert saved.status_code == 201, saved.text
    today = datetime.now(UTC).date().isoformat()
    invoices = [await new_invoice(owner, client_id, due_date=today) for _ in range(3)]

    async def all_paid() -> bool:
        answers = [await owner.api.get(f"/api/invoices/{i}") for i in invoices]
        return all(a.json()["status"] == "paid" for a in answers)

    # The next minute's run, a tick, the charges and their events back to the invoices.
    await eventually(all_paid, 180, "the billing run to charge the three invoices")

    # The run sends the invoice id as the charge's reference.
    ledger = FakePayControl(f"{pair.fakepay}/_control").ledger()
    assert [sum(e.reference == i for e in ledger) for i in invoices] == [1, 1, 1]
    charged = await query(
        pair,
        "payment",
        "SELECT COUNT(*) FROM payments WHERE kind = 'autopay' AND status = 'succeeded'"
        " AND invoice_id IN :ids",
        ids=tuple(uuid.UUID(i).bytes for i in invoices),
    )
    assert charged[0][0] == 3
    # Each run was started by one worker: both looked every tick, one took the lease.
    runs = await query(pair, "payment", "SELECT scheduled_for FROM billing_runs")
    started = [
        (worker, entry["scheduled_for"])
        for worker in ("payment-worker", "payment-worker-2")
        for entry in log_events(pair, worker, "billing_run_started")
    ]
    assert len(runs) >= 1
    assert len(started) == len(runs)
    assert len({scheduled_for for _, scheduled_for in started}) == len(runs)


async def test_requests_reach_both_api_replicas_and_a_killed_one_loses_only_answers_begun(
    pair: Suite, signed_in: Any
) -> None:
    assert pair.processes is not None
    owner = await signed_in(f"replicas-{uuid.uuid4().hex[:8]}@example.com")
    replicas = {address.removeprefix("http://") for address in pair.replicas["invoice"]}
    for _ in range(10):
        assert (await owner.api.get("/api/invoices")).status_code == 200
    served = {e["upstream"] for e in access_log(pair) if e["uri"] == "/api/invoices"}
    assert served == replicas

    # Killed while reads are in flight: those it held and had not begun to answer are
    # answered by the other replica. One whose answer it had begun to send cannot be: nginx
    # has passed the status line on to the client, and logs the cut ("while reading
    # upstream"); the client sees the answer break off and may send the read again.
    reads = [asyncio.ensure_future(owner.api.get("/api/invoices")) for _ in range(40)]
    await asyncio.sleep(0.05)
    pair.processes.kill("invoice-api-2")
    during = await asyncio.gather(*reads, return_exceptions=True)
    dead = pair.replicas["invoice"][1].removeprefix("http://")
    cut = [
        line
        for line in (pair.logs / "gateway" / "error.log").read_text().splitlines()
        if "prematurely closed connection while reading upstream," in line and dead in line
    ]
    failed = [answer for answer in during if not isinstance(answer, httpx.Response)]
    assert all(isinstance(error, httpx.RemoteProtocolError) for error in failed), failed
    assert len(failed) == len(cut)
    answered = [answer for answer in during if isinstance(answer, httpx.Response)]
    assert [r.status_code for r in answered] == [200] * len(answered)
    # Then writes and reads one after another: a refused connection moves on, POST included.
    after = []
    for n in range(10):
        client = {"name": f"Client {n}", "email": f"ap{n}@client.example"}
        after.append(await owner.api.post("/api/clients", json=client))
        after.append(await owner.api.get("/api/clients"))

    assert [r.status_code for r in after] == [201, 200] * 10
    names = [c["name"] for c in (await owner.api.get("/api/clients?limit=100")).json()["items"]]
    assert sorted(names) == sorted(f"Client {n}" for n in range(10))
    moved_on = [
        e for e in access_log(pair) if e["upstream"].startswith(f"{dead}, ") and e["status"] < 300
    ]
    assert moved_on, "no request was tried on the killed replica and then on the other"

    pair.processes.restart("invoice-api-2")
    wait_for_port("127.0.0.1", int(dead.rsplit(":", 1)[1]), timeout=300)


async def test_workers_split_partitions_and_the_survivor_takes_over_a_killed_ones(
    pair: Suite, signed_in: Any
) -> None:
    assert pair.processes is not None
    topic = "invoice.events"

    async def split() -> bool:
        first, second = (assigned(pair, w, topic) for w in ("payment-worker", "payment-worker-2"))
        return bool(first) and bool(second) and first | second == set(range(INVOICE_PARTITIONS))

    await eventually(split, 120, "both payment workers to hold invoice.events partitions")
    first = assigned(pair, "payment-worker", topic)
    victims = assigned(pair, "payment-worker-2", topic)
    assert not first & victims

    # Owners whose events land on the partitions of the worker about to die, and others.
    owners: list[SignedIn] = []
    while sum(_partition(o.user_id.encode(), INVOICE_PARTITIONS) in victims for o in owners) < 2:
        owners.append(await signed_in(f"worker-{uuid.uuid4().hex[:8]}@example.com"))
        assert len(owners) <= 16, "no owner's events landed on the second worker's partitions"
    clients = [await new_client(owner, "Initech") for owner in owners]

    pair.processes.kill("payment-worker-2")
    invoices = []
    for owner, client_id in zip(owners, clients, strict=True):
        invoices += [await new_invoice(owner, client_id) for _ in range(3)]

    async def all_copied() -> bool:
        rows = await query(
            pair,
            "payment",
            "SELECT COUNT(*) FROM invoices WHERE invoice_id IN :ids",
            ids=tuple(uuid.UUID(i).bytes for i in invoices),
        )
        return int(rows[0][0]) == len(invoices)

    await eventually(all_copied, 180, "the surviving worker to handle every invoice.created")
    assert assigned(pair, "payment-worker", topic) == set(range(INVOICE_PARTITIONS))
    pair.processes.restart("payment-worker-2")
    await eventually(split, 120, "the restarted worker to get partitions back")
