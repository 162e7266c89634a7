"""Domain operations of the sync service: connections, asking for syncs, and the job queue's
bookkeeping. They stage changes and job commands; the edge commits."""

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import new_event
from common.outbox import add_event, utcnow
from sync import repository
from sync.commands import JOB_REQUESTED, JOBS_TOPIC, JobRequested
from sync.config import SyncSettings
from sync.crypto import Keyring
from sync.events import SOURCE
from sync.exceptions import (
    AlreadyConnected,
    ConnectionNotFound,
    NoConnection,
    PlatformUrlNotAllowed,
    SyncRequestedTooSoon,
)
from sync.models import Connection, JobState, OutboxMessage, Phase, SyncedRecord

# States in which no job is on its way: a dispatch may queue one.
RESTING = (JobState.IDLE, JobState.FAILED)


@dataclass(frozen=True)
class NewConnection:
    base_url: str
    api_key: str


def check_platform_url(settings: SyncSettings, base_url: str) -> str:
    """The URL without a trailing slash, if it names an allowed platform host."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PlatformUrlNotAllowed("base_url must be an http(s) URL")
    if settings.require_https and parts.scheme != "https":
        raise PlatformUrlNotAllowed("base_url must use https")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise PlatformUrlNotAllowed("base_url must not carry credentials, a query or a fragment")
    allowed = {h.strip().lower() for h in settings.allowed_platform_hosts.split(",") if h.strip()}
    host = parts.hostname.lower()
    with_port = f"{host}:{parts.port}" if parts.port else host
    if "*" not in allowed and host not in allowed and with_port not in allowed:
        raise PlatformUrlNotAllowed("base_url is not a billing platform this service may call")
    return base_url.rstrip("/")


def queue_job(session: AsyncSession, connection: Connection, reason: str) -> None:
    """Give the connection a fresh job token and stage its job command in the outbox; any
    message with an older token is stale from now on."""
    connection.job_token = str(uuid.uuid4())
    connection.state = JobState.QUEUED
    connection.queued_at = utcnow()
    command = JobRequested(
        connection_id=connection.id,
        owner_id=connection.owner_id,
        token=connection.job_token,
        reason=reason,
    )
    add_event(
        session,
        OutboxMessage,
        JOBS_TOPIC,
        new_event(SOURCE, JOB_REQUESTED, connection.owner_id, command),
    )


async def create_connection(
    session: AsyncSession,
    settings: SyncSettings,
    keyring: Keyring,
    owner_id: uuid.UUID,
    new: NewConnection,
) -> Connection:
    """Connect the owner's platform account and queue its first sync."""
    base_url = check_platform_url(settings, new.base_url)
    if await repository.connection_of_owner(session, owner_id) is not None:
        raise AlreadyConnected()
    connection_id = uuid.uuid4()
    sealed = keyring.seal(new.api_key, connection_id)
    connection = Connection(
        id=connection_id,
        owner_id=owner_id,
        base_url=base_url,
        api_key_sealed=sealed.data,
        api_key_key_id=sealed.key_id,
        state=JobState.IDLE,
        scan_number=0,
        phase=Phase.CLIENTS,
        pages_read=0,
        invoices_seen=0,
        invoices_changed=0,
        invoices_skipped=0,
        failures=0,
    )
    session.add(connection)
    try:
        await session.flush()
    except IntegrityError:  # the unique owner key: a concurrent POST won
        raise AlreadyConnected() from None
    queue_job(session, connection, "connected")
    await session.flush()
    return connection


async def list_connections(session: AsyncSession, owner_id: uuid.UUID) -> list[Connection]:
    connection = await repository.connection_of_owner(session, owner_id)
    return [] if connection is None else [connection]


async def delete_connection(
    session: AsyncSession, owner_id: uuid.UUID, connection_id: uuid.UUID
) -> None:
    """Forget the connection, its sealed key and its records; imported invoices stay."""
    connection = await repository.connection_of_owner(session, owner_id, for_update=True)
    if connection is None or connection.id != connection_id:
        raise ConnectionNotFound()
    await _forget(session, connection)


async def _forget(session: AsyncSession, connection: Connection) -> None:
    await session.execute(delete(SyncedRecord).where(SyncedRecord.connection_id == connection.id))
    await session.delete(connection)
    await session.flush()


async def forget_owner(session: AsyncSession, owner_id: uuid.UUID) -> None:
    """A deleted account: its connection and sealed key go."""
    connection = await repository.connection_of_owner(session, owner_id, for_update=True)
    if connection is not None:
        await _forget(session, connection)


async def status_of(session: AsyncSession, owner_id: uuid.UUID) -> Connection:
    connection = await repository.connection_of_owner(session, owner_id)
    if connection is None:
        raise NoConnection()
    return connection


async def request_run(
    session: AsyncSession, settings: SyncSettings, owner_id: uuid.UUID
) -> Connection:
    """Queue a sync now, at most once per interval; one already on its way is left alone."""
    connection = await repository.connection_of_owner(session, owner_id, for_update=True)
    if connection is None:
        raise NoConnection()
    now = utcnow()
    interval = timedelta(seconds=settings.manual_run_interval_seconds)
    if connection.manual_run_at is not None and now - connection.manual_run_at < interval:
        raise SyncRequestedTooSoon((connection.manual_run_at + interval - now).total_seconds())
    connection.manual_run_at = now
    if connection.state in (*RESTING, JobState.PARKED):
        connection.failures = 0 if connection.state == JobState.PARKED else connection.failures
        queue_job(session, connection, "manual")
    await session.flush()
    return connection


@dataclass
class DispatchCount:
    seen: int = 0
    queued: int = 0
    busy: int = 0  # a job already queued, running or parked: not queued twice


async def dispatch_batch(
    session: AsyncSession, after: uuid.UUID | None, limit: int, reason: str, count: DispatchCount
) -> uuid.UUID | None:
    """Queue a job for each resting connection of one batch; the last id, or None at the end."""
    ids = await repository.connection_ids_after(session, after, limit)
    if not ids:
        return None
    for connection in await repository.lock_connections(session, ids):
        count.seen += 1
        if connection.state in RESTING:
            queue_job(session, connection, reason)
            count.queued += 1
        else:
            count.busy += 1
    await session.flush()
    return ids[-1]


async def requeue_due(session: AsyncSession, settings: SyncSettings, limit: int = 1000) -> int:
    """Queue again the parked jobs that are due, the jobs of workers that died, and queued
    jobs whose message never arrived."""
    now = utcnow()
    queued_before = now - timedelta(seconds=settings.queued_timeout_seconds)
    due = await repository.due_for_requeue(session, now, queued_before, limit)
    for connection in due:
        connection.lease_owner = None
        connection.lease_until = None
        queue_job(session, connection, "retry")
    await session.flush()
    return len(due)


def parked_until(settings: SyncSettings, failures: int, at_least: float | None) -> datetime:
    """When a job that failed `failures` times running is tried again: exponential backoff
    with jitter (half to all of the wait), so the jobs parked by one outage do not all come
    back at once; the first of them to find the platform answering wakes the rest
    (`wake_parked_on`)."""
    ceiling = min(settings.park_max_seconds, settings.park_base_seconds * 2 ** max(0, failures - 1))
    wait = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
    if at_least is not None:
        wait = max(wait, min(at_least, settings.park_max_seconds))
    return utcnow() + timedelta(seconds=wait)


async def wake_parked_on(session: AsyncSession, base_url: str) -> int:
    """The platform answers again: its jobs parked by the outage are due now."""
    now = utcnow()
    result = await session.execute(
        update(Connection)
        .where(
            Connection.state == JobState.PARKED,
            Connection.base_url == base_url,
            Connection.next_attempt_at > now,
            Connection.last_error.like("platform unavailable%"),
        )
        .values(next_attempt_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
