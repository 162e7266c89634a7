"""A sync job: one slice of one connection's sync, page by page, each page checkpointed.

A job claims the connection's lease (so a redelivered message cannot run the same owner's
sync twice at once), reads up to `pages_per_slice` pages and hands the rest to a new job at
the back of the queue, so a very large account takes turns with the small ones.

Every page is one transaction: what changed since the last read (as a
`billing.invoices_imported` event in the outbox), the records' new state, the checkpoint
(phase and cursor) and the lease's renewal commit together. A crash anywhere leaves the
connection at the last page kept, and the next job reads on from there; a page read twice
sends nothing the second time.

Every sync reads the whole list again, clients then invoices, because the platform has no
"changed since": only a full read sees an old invoice's new status, and an invoice no longer
listed after a full read was removed upstream (docs/sync.md).
"""

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import new_event
from common.logging import get_logger
from common.outbox import add_event, utcnow
from sync import repository, service
from sync.commands import JobRequested
from sync.config import SyncSettings
from sync.crypto import Keyring, KeyringError, Sealed
from sync.events import (
    INVOICES_IMPORTED,
    SOURCE,
    TOPIC,
    ImportedClient,
    ImportedInvoice,
    InvoicesImported,
)
from sync.models import Connection, JobState, OutboxMessage, Phase
from sync.platform import BadPlatformData, Page, PlatformApi, PlatformRejected, PlatformUnavailable

log = get_logger(__name__)

# Progress of the imports, in this worker (docs/observability.md).
SYNC_JOBS_RUNNING = Gauge("sync_jobs_running", "Sync jobs this worker is running now")
SYNC_PAGES = Counter("sync_pages_imported", "Platform pages read and kept", ["kind"])
SYNC_INVOICES = Counter(
    "sync_invoices", "Invoices of the pages kept: imported (new or changed) or skipped", ["result"]
)


class LeaseLost(Exception):
    """Another worker holds the connection now (this one was too slow, or it was deleted)."""


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _payload(record: ImportedClient | ImportedInvoice) -> str:
    return record.model_dump_json()


@dataclass
class _Slice:
    """What a slice keeps between its pages."""

    connection_id: uuid.UUID
    owner_id: uuid.UUID
    base_url: str
    api_key: str
    pages: int = 0
    # Invoices of the last page that were new or changed, and so handed on.
    imported: int = 0
    clients: dict[str, ImportedClient] = field(default_factory=dict)


class JobRunner:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: SyncSettings,
        keyring: Keyring,
        platform: PlatformApi,
        worker: str | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.keyring = keyring
        self.platform = platform
        self.worker = worker or worker_name()

    async def run(self, job: JobRequested) -> str:
        """Run one job message; what became of it (for logs and tests)."""
        with structlog.contextvars.bound_contextvars(
            connection_id=str(job.connection_id), owner_id=str(job.owner_id)
        ):
            work = await self._claim(job)
            if work is None:
                log.info("sync_job_skipped", reason="stale or claimed elsewhere")
                return "skipped"
            SYNC_JOBS_RUNNING.inc()
            try:
                for _ in range(self.settings.pages_per_slice):
                    done = await self._step(work)
                    if work.pages == 1 and job.reason == "retry":
                        await self._wake_others(work)
                    if done:
                        log.info("sync_finished")
                        return "finished"
                await self._hand_over(work)
                return "continued"
            except LeaseLost:
                log.warning("sync_lease_lost")
                return "lease_lost"
            except (PlatformUnavailable, PlatformRejected, BadPlatformData, KeyringError) as exc:
                await self._park(work, exc)
                return "parked"
            except Exception as exc:
                # A fault of ours or of the database: parked like a platform fault when the
                # database answers; otherwise the lease lapses and the job is queued again.
                log.exception("sync_job_failed", error_type=type(exc).__name__)
                await self._park(work, exc)
                return "parked"
            finally:
                SYNC_JOBS_RUNNING.dec()

    async def _claim(self, job: JobRequested) -> _Slice | None:
        now = utcnow()
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        async with self.sessionmaker() as session, session.begin():
            claimed = await repository.claim(
                session, job.connection_id, job.token, self.worker, now, lease_until
            )
            if not claimed:
                return None
            connection = await repository.get_connection(session, job.connection_id)
            if connection is None:  # the claim above holds the connection's row
                raise RuntimeError(f"connection {job.connection_id} vanished while claimed")
            if connection.scan_started_at is None:
                # A new full read begins: its progress counts from zero.
                connection.scan_started_at = now
                connection.pages_read = 0
                connection.invoices_seen = 0
                connection.invoices_changed = 0
                connection.invoices_skipped = 0
            sealed = Sealed(connection.api_key_key_id, connection.api_key_sealed)
            base_url, owner_id = connection.base_url, connection.owner_id
        try:
            api_key = self.keyring.open(sealed, job.connection_id)
        except KeyringError as exc:
            work = _Slice(job.connection_id, owner_id, base_url, "")
            await self._park(work, exc)
            return None
        return _Slice(job.connection_id, owner_id, base_url, api_key)

    async def _locked(self, session: AsyncSession, work: _Slice) -> Connection:
        connection = await repository.get_connection(session, work.connection_id, for_update=True)
        if connection is None or connection.lease_owner != self.worker:
            raise LeaseLost()
        return connection

    async def _position(self, work: _Slice) -> tuple[str, str | None, int]:
        async with self.sessionmaker() as session:
            connection = await repository.get_connection(session, work.connection_id)
            if connection is None or connection.lease_owner != self.worker:
                raise LeaseLost()
            return connection.phase, connection.cursor, connection.scan_number

    async def _step(self, work: _Slice) -> bool:
        """Read and keep one page; True when the whole sync is done."""
        phase, cursor, scan = await self._position(work)
        if phase == Phase.REMOVALS:
            return await self._removals(work, scan)
        kind = "clients" if phase == Phase.CLIENTS else "invoices"
        page = await self.platform.page(work.base_url, work.api_key, kind, cursor)
        for problem in page.problems:
            log.warning("platform_record_skipped", problem=problem)
        if kind == "invoices":
            await self._fetch_missing_clients(work, page)
        async with self.sessionmaker() as session, session.begin():
            connection = await self._locked(session, work)
            if (connection.phase, connection.cursor) != (phase, cursor):
                raise LeaseLost()  # someone moved the checkpoint: not ours any more
            if kind == "clients":
                await self._keep_clients(session, work, page, scan)
            else:
                await self._keep_invoices(session, work, page, scan, connection)
            connection.pages_read += 1
            connection.cursor = page.next_cursor
            if page.next_cursor is None:
                connection.phase = Phase.INVOICES if kind == "clients" else Phase.REMOVALS
            if page.problems:
                connection.last_error = f"skipped: {page.problems[0]}"[:500]
                connection.last_error_at = utcnow()
            connection.lease_until = utcnow() + timedelta(seconds=self.settings.lease_seconds)
        work.pages += 1
        SYNC_PAGES.labels(kind).inc()
        if kind == "invoices":
            SYNC_INVOICES.labels("imported").inc(work.imported)
            SYNC_INVOICES.labels("skipped").inc(len(page.skipped))
        return False

    async def _keep_clients(
        self, session: AsyncSession, work: _Slice, page: Page, scan: int
    ) -> None:
        ids = [client.external_id for client in page.clients]
        known = await repository.records(session, work.connection_id, "c", ids)
        changed = [c for c in page.clients if _differs(known.get(c.external_id), _payload(c))]
        unchanged = [c.external_id for c in page.clients if c not in changed]
        await repository.save_records(
            session,
            work.connection_id,
            "c",
            [
                {"external_id": c.external_id, "payload": _payload(c), "seen_scan": scan}
                for c in changed
            ],
        )
        await repository.mark_seen(session, work.connection_id, "c", unchanged, scan)
        for client in page.clients:
            work.clients[client.external_id] = client
        if changed:
            self._publish(session, work, changed, [])

    async def _fetch_missing_clients(self, work: _Slice, page: Page) -> None:
        """Clients of this page's invoices not read before (created after the client pages)."""
        wanted = {i.client_external_id for i in page.invoices} - set(work.clients)
        if wanted:
            async with self.sessionmaker() as session:
                known = await repository.records(session, work.connection_id, "c", list(wanted))
            for external_id, record in known.items():
                work.clients[external_id] = ImportedClient.model_validate_json(record.payload)
        for external_id in wanted - set(work.clients):
            client = await self.platform.client(work.base_url, work.api_key, external_id)
            if client is not None:
                work.clients[external_id] = client

    async def _keep_invoices(
        self, session: AsyncSession, work: _Slice, page: Page, scan: int, connection: Connection
    ) -> None:
        usable = []
        for invoice in page.invoices:
            if invoice.client_external_id in work.clients:
                usable.append(invoice)
            else:
                log.warning(
                    "platform_record_skipped",
                    problem=f"record {invoice.external_id}: unknown client",
                )
                page.skipped.append(invoice.external_id)
        ids = [invoice.external_id for invoice in usable]
        known = await repository.records(session, work.connection_id, "i", ids)
        changed = [i for i in usable if _differs(known.get(i.external_id), _payload(i))]
        changed_ids = {i.external_id for i in changed}
        # A record skipped as bad this time keeps what was imported before, and is not
        # taken for removed.
        unchanged = [i for i in ids if i not in changed_ids] + [s for s in page.skipped if s]
        await repository.save_records(
            session,
            work.connection_id,
            "i",
            [
                {"external_id": i.external_id, "payload": _payload(i), "seen_scan": scan}
                for i in changed
            ],
        )
        await repository.mark_seen(session, work.connection_id, "i", unchanged, scan)
        if changed:
            clients = {i.client_external_id: work.clients[i.client_external_id] for i in changed}
            await self._save_fetched_clients(session, work, list(clients.values()), scan)
            self._publish(session, work, list(clients.values()), changed)
        connection.invoices_seen += len(page.invoices)
        connection.invoices_changed += len(changed)
        work.imported = len(changed)
        connection.invoices_skipped += len(page.skipped)

    async def _save_fetched_clients(
        self, session: AsyncSession, work: _Slice, clients: list[ImportedClient], scan: int
    ) -> None:
        """Clients fetched one by one are remembered like the ones read in pages."""
        known = await repository.records(
            session, work.connection_id, "c", [c.external_id for c in clients]
        )
        new = [c for c in clients if c.external_id not in known]
        await repository.save_records(
            session,
            work.connection_id,
            "c",
            [
                {"external_id": c.external_id, "payload": _payload(c), "seen_scan": scan}
                for c in new
            ],
        )

    async def _removals(self, work: _Slice, scan: int) -> bool:
        """Mark one batch of invoices the finished read did not see; True when none is left."""
        async with self.sessionmaker() as session, session.begin():
            connection = await self._locked(session, work)
            gone = await repository.unseen_invoices(
                session, work.connection_id, scan, self.settings.page_size
            )
            if gone:
                invoices = []
                for record in gone:
                    record.removed = True
                    invoice = ImportedInvoice.model_validate_json(record.payload)
                    invoices.append(invoice.model_copy(update={"removed": True}))
                self._publish(session, work, [], invoices)
                connection.lease_until = utcnow() + timedelta(seconds=self.settings.lease_seconds)
                log.info("invoices_removed_upstream", count=len(gone))
                return False
            self._finish(connection)
            return True

    def _finish(self, connection: Connection) -> None:
        now = utcnow()
        connection.state = JobState.IDLE
        connection.last_success_at = now
        connection.failures = 0
        connection.next_attempt_at = None
        connection.lease_owner = None
        connection.lease_until = None
        connection.job_token = None
        connection.scan_number += 1
        connection.phase = Phase.CLIENTS
        connection.cursor = None
        # The last error stays visible beside the newer success, with its time.
        connection.scan_started_at = None

    def _publish(
        self,
        session: AsyncSession,
        work: _Slice,
        clients: list[ImportedClient],
        invoices: list[ImportedInvoice],
    ) -> None:
        data = InvoicesImported(
            owner_id=work.owner_id,
            connection_id=work.connection_id,
            clients=clients,
            invoices=invoices,
        )
        add_event(
            session, OutboxMessage, TOPIC, new_event(SOURCE, INVOICES_IMPORTED, work.owner_id, data)
        )

    async def _wake_others(self, work: _Slice) -> None:
        """A parked job read a page: the platform is back, so the other jobs it parked are
        due now rather than at the end of their backoff."""
        async with self.sessionmaker() as session, session.begin():
            woken = await service.wake_parked_on(session, work.base_url)
        if woken:
            log.info("parked_jobs_woken", count=woken)

    async def _hand_over(self, work: _Slice) -> None:
        """Release the lease and queue the rest of the sync behind the jobs waiting now."""
        async with self.sessionmaker() as session, session.begin():
            connection = await self._locked(session, work)
            connection.lease_owner = None
            connection.lease_until = None
            service.queue_job(session, connection, "continuation")
        log.info("sync_continues", pages=work.pages)

    async def _park(self, work: _Slice, error: Exception) -> None:
        reason = _reason(error)
        async with self.sessionmaker() as session, session.begin():
            connection = await repository.get_connection(
                session, work.connection_id, for_update=True
            )
            if connection is None or connection.lease_owner != self.worker:
                return
            connection.failures += 1
            connection.last_error = reason[:500]
            connection.last_error_at = utcnow()
            connection.lease_owner = None
            connection.lease_until = None
            connection.job_token = None
            if isinstance(error, (PlatformRejected, KeyringError)):
                # Retrying will not help until the owner or the platform changes something;
                # the next dispatch or a manual run tries again.
                connection.state = JobState.FAILED
                connection.next_attempt_at = None
            else:
                connection.state = JobState.PARKED
                retry_after = error.retry_after if isinstance(error, PlatformUnavailable) else None
                connection.next_attempt_at = service.parked_until(
                    self.settings, connection.failures, retry_after
                )
        log.warning("sync_parked", reason=reason, failures=connection.failures)


def _differs(record: object, payload: str) -> bool:
    if record is None:
        return True
    return bool(getattr(record, "payload", None) != payload or getattr(record, "removed", False))


def _reason(error: Exception) -> str:
    if isinstance(error, PlatformUnavailable):
        return f"platform unavailable: {error.reason}"
    if isinstance(error, (PlatformRejected, BadPlatformData, KeyringError)):
        return str(error)
    return f"internal error ({type(error).__name__})"
