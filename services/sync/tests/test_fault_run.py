"""The sync as it runs for real, under faults: 50 owners with 200 invoices each, two sync
workers and the invoice service's worker as processes on a Kafka-protocol broker, the
billing platform as a process. Mid-sync the platform has three outages (503s, connection
resets, timeouts), one sync worker is SIGKILLed and started again, and invoices change
status and disappear upstream. At the end every upstream invoice exists exactly once in the
invoice schema, with its latest status, for its own owner only; the removed one is marked.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.identity import TestIssuer
from common.testing.servers import logged_process
from invoice.models import Invoice
from simulators.billing_platform_testing import BillingPlatformServer
from sync.models import Connection, JobState

from .conftest import TEST_KEY, connect

OWNERS = 50
INVOICES_EACH = 200
OUTAGE_SECONDS = 3
# The whole run, generously: it takes about a minute here on a quiet machine.
DEADLINE_SECONDS = 150


def _worker_env(
    tmp_path: Path, sync_database: str, invoice_database: str, kafka_bootstrap: str
) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "json",
        "E2E_LOGS": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SYNC_DATABASE_URL": sync_database,
        "INVOICE_DATABASE_URL": invoice_database,
        "SYNC_CONNECTION_KEY": TEST_KEY,
        "SYNC_PAGE_SIZE": "100",
        "SYNC_PAGES_PER_SLICE": "5",
        "SYNC_REQUEST_TIMEOUT_SECONDS": "1",
        "SYNC_RETRY_FOR_SECONDS": "2",
        "SYNC_RETRY_BASE_SECONDS": "0.1",
        "SYNC_RETRY_MAX_WAIT_SECONDS": "0.5",
        "SYNC_BREAKER_OPEN_SECONDS": "1",
        "SYNC_LEASE_SECONDS": "5",
        "SYNC_PARK_BASE_SECONDS": "0.5",
        "SYNC_PARK_MAX_SECONDS": "2",
        "SYNC_RECOVER_EVERY_SECONDS": "0.5",
        "SYNC_DISPATCH_EVERY_SECONDS": "0",
    }


class Workers:
    """Sync workers as processes that the test can kill -9 and start again."""

    def __init__(self, stack: ExitStack, env: dict[str, str]) -> None:
        self.stack = stack
        self.env = env
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        command = [sys.executable, "-m", "sync.worker"]
        self.children[name] = self.stack.enter_context(logged_process(name, command, self.env))

    def kill(self, name: str) -> None:
        child = self.children[name]
        child.send_signal(signal.SIGKILL)
        child.wait(10)


async def _until(
    condition: Callable[[], Any],
    deadline: float,
    what: str,
    describe: Callable[[], Any] | None = None,
) -> Any:
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            state = await describe() if describe is not None else ""
            raise AssertionError(f"timed out waiting for {what}: {state}")
        await asyncio.sleep(0.3)


@pytest.fixture
def fault_run_platform() -> Iterator[BillingPlatformServer]:
    """A platform of its own: its faults hit every account, so no other test may share it."""
    with BillingPlatformServer() as server:
        yield server


async def test_fifty_owners_sync_through_outages_a_killed_worker_and_upstream_changes(
    tmp_path: Path,
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    fault_run_platform: BillingPlatformServer,
    sync_database: str,
    invoice_database: str,
    kafka_bootstrap: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    invoice_sessions: async_sessionmaker[AsyncSession],
) -> None:
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    platform = fault_run_platform.control_client()
    accounts: dict[uuid.UUID, str] = {}
    connections: list[uuid.UUID] = []
    owner_of_connection: dict[uuid.UUID, uuid.UUID] = {}
    for n in range(OWNERS):
        owner = uuid.uuid4()
        account, key = platform.create_account(name=f"Owner {n}", clients=4, invoices=INVOICES_EACH)
        accounts[owner] = account
        connections.append(
            await connect(api, test_issuer.headers(owner), fault_run_platform.base_url, key)
        )
        owner_of_connection[connections[-1]] = owner
    logs = Path(os.environ.get("SYNC_FAULT_RUN_LOGS", tmp_path))  # to keep them for a look
    os.makedirs(logs, exist_ok=True)
    env = _worker_env(logs, sync_database, invoice_database, kafka_bootstrap)

    async def invoices_seen() -> int:
        async with sessionmaker() as session:
            total = await session.scalar(
                select(func.sum(Connection.invoices_seen)).where(Connection.id.in_(connections))
            )
            return int(total or 0)

    async def at_least(count: int) -> Callable[[], Any]:
        async def reached() -> bool:
            return await invoices_seen() >= count

        return reached

    total = OWNERS * INVOICES_EACH
    changed: dict[str, str] = {}
    removed: list[str] = []
    with ExitStack() as stack:
        stack.enter_context(
            logged_process("invoice-worker", [sys.executable, "-m", "invoice.worker"], env)
        )
        workers = Workers(stack, env)
        workers.start("sync-worker-1")
        workers.start("sync-worker-2")

        await _until(await at_least(total // 10), deadline, "the sync to start")
        platform.fault("error", seconds=OUTAGE_SECONDS)  # outage 1: 503s
        # Changes behind the cursors of owners already under way, and ahead of others.
        owners = list(accounts)
        for owner in owners[:10]:
            first = platform.invoices(accounts[owner])[0]
            platform.set_status(accounts[owner], first["id"], "paid")
            changed[first["id"]] = "paid"
        # And a removal of an invoice already imported: an owner whose first sync is done.
        async with sessionmaker() as session:
            synced = await session.scalar(
                select(Connection.id)
                .where(Connection.id.in_(connections), Connection.last_success_at.is_not(None))
                .limit(1)
            )
        assert synced is not None
        synced_account = accounts[owner_of_connection[synced]]
        gone = platform.invoices(synced_account)[5]
        platform.remove_invoice(synced_account, gone["id"])
        removed.append(gone["id"])

        await _until(await at_least(total * 3 // 10), deadline, "progress after outage 1")
        workers.kill("sync-worker-1")  # mid-slice, holding leases and uncommitted offsets
        platform.fault("reset", seconds=OUTAGE_SECONDS)  # outage 2: connections reset
        await asyncio.sleep(1)
        workers.start("sync-worker-1b")

        await _until(await at_least(total * 6 // 10), deadline, "progress after the kill")
        platform.fault("hang", seconds=OUTAGE_SECONDS, delay=2)  # outage 3: timeouts
        for owner in owners[20:25]:
            last = platform.invoices(accounts[owner])[-1]
            platform.set_status(accounts[owner], last["id"], "void")
            changed[last["id"]] = "void"
        late = platform.add_invoice(accounts[owners[30]], amount="77.70", status="pending")

        async def states() -> str:
            async with sessionmaker() as session:
                rows = (
                    await session.execute(
                        select(Connection.state, Connection.scan_number, func.count())
                        .where(Connection.id.in_(connections))
                        .group_by(Connection.state, Connection.scan_number)
                    )
                ).all()
            return ", ".join(f"{n} {state} (scan {scan})" for state, scan, n in rows)

        async def all_idle_once() -> bool:
            async with sessionmaker() as session:
                rows = (
                    await session.scalars(select(Connection).where(Connection.id.in_(connections)))
                ).all()
            return all(c.state == JobState.IDLE and c.scan_number >= 1 for c in rows)

        await _until(all_idle_once, deadline, "every first sync to finish", states)
        # The next scheduled sync, through the command, reads past every change.
        command = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "sync.cli", "dispatch"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        output = (await command.communicate())[0].decode()
        assert command.returncode == 0
        assert f"{OWNERS} jobs queued" in output

        async def all_idle_twice() -> bool:
            async with sessionmaker() as session:
                rows = (
                    await session.scalars(select(Connection).where(Connection.id.in_(connections)))
                ).all()
            return all(c.state == JobState.IDLE and c.scan_number >= 2 for c in rows)

        await _until(all_idle_twice, deadline, "every second sync to finish", states)

        expected = {owner: platform.invoices(account) for owner, account in accounts.items()}

        want = {(owner, i["id"]): i["status"] for owner, items in expected.items() for i in items}

        async def imported_rows() -> dict[tuple[uuid.UUID, str], Any]:
            async with invoice_sessions() as session:
                rows = (
                    await session.execute(
                        select(
                            Invoice.owner_id,
                            Invoice.external_id,
                            Invoice.status,
                            Invoice.removed_upstream_at,
                        ).where(Invoice.owner_id.in_(list(accounts)))
                    )
                ).all()
            return {(r.owner_id, r.external_id): r for r in rows}

        async def differences() -> str:
            have = await imported_rows()
            missing = [key for key in want if key not in have]
            wrong = [
                (k, have[k].status, s) for k, s in want.items() if k in have and have[k].status != s
            ]
            marked = [
                k for k in have if k[1] in removed and have[k].removed_upstream_at is not None
            ]
            return (
                f"{len(have)} rows, {len(missing)} missing, wrong statuses {wrong[:5]}, "
                f"removed marked {marked}"
            )

        async def imported_as_upstream() -> bool:
            have = await imported_rows()
            if any(key not in have or have[key].status != s for key, s in want.items()):
                return False
            return all(
                any(k[1] == r and have[k].removed_upstream_at is not None for k in have)
                for r in removed
            )

        await _until(
            imported_as_upstream, deadline, "the invoice schema to match upstream", differences
        )

    # Exactly once, for the right owner only.
    async with invoice_sessions() as session:
        rows = (
            await session.execute(
                select(Invoice.owner_id, Invoice.external_id, Invoice.status).where(
                    Invoice.owner_id.in_(list(accounts))
                )
            )
        ).all()
    keys = [(r.owner_id, r.external_id) for r in rows]
    assert len(keys) == len(set(keys)), "an invoice imported twice"
    owner_of = {i["id"]: owner for owner, items in expected.items() for i in items}
    for row in rows:
        if row.external_id in owner_of:
            assert owner_of[row.external_id] == row.owner_id, "an invoice under the wrong owner"
        else:
            assert row.external_id in removed
    assert len(rows) == total + 1  # every invoice, the late one, and the removed one kept
    by_id = {r.external_id: r.status for r in rows}
    for external_id, status in changed.items():
        assert by_id[external_id] == status
    assert by_id[late["id"]] == "pending"
    async with sessionmaker() as session:
        parked_ever = await session.scalar(
            select(func.count())
            .select_from(Connection)
            .where(Connection.id.in_(connections), Connection.last_error.is_not(None))
        )
    # The outages were seen (and ridden out): some jobs parked with an error on record.
    assert parked_ever
    print(f"fault run: {time.monotonic() - started:.1f}s for {total} invoices")
