"""Queries of the sync service. Repositories read and stage; they never commit."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from sync.models import Connection, JobState, SyncedRecord


async def connection_of_owner(
    session: AsyncSession, owner_id: uuid.UUID, *, for_update: bool = False
) -> Connection | None:
    query = select(Connection).where(Connection.owner_id == owner_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(query)


async def get_connection(
    session: AsyncSession, connection_id: uuid.UUID, *, for_update: bool = False
) -> Connection | None:
    query = select(Connection).where(Connection.id == connection_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(query)


async def connection_ids_after(
    session: AsyncSession, after: uuid.UUID | None, limit: int
) -> Sequence[uuid.UUID]:
    """Every connection's id in id order, one batch at a time."""
    query = select(Connection.id).order_by(Connection.id).limit(limit)
    if after is not None:
        query = query.where(Connection.id > after)
    return (await session.scalars(query)).all()


async def lock_connections(session: AsyncSession, ids: Sequence[uuid.UUID]) -> Sequence[Connection]:
    query = (
        select(Connection)
        .where(Connection.id.in_(ids))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).all()


async def due_for_requeue(
    session: AsyncSession, now: datetime, queued_before: datetime, limit: int
) -> Sequence[Connection]:
    """Parked jobs whose wait is over, claims whose worker died, and queued jobs whose
    message was lost; locked, rows another worker holds skipped."""
    parked = (Connection.state == JobState.PARKED) & (Connection.next_attempt_at <= now)
    lapsed = (Connection.state == JobState.RUNNING) & (Connection.lease_until < now)
    lost = (Connection.state == JobState.QUEUED) & (Connection.queued_at < queued_before)
    query = (
        select(Connection)
        .where(parked | lapsed | lost)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def claim(
    session: AsyncSession,
    connection_id: uuid.UUID,
    token: str,
    worker: str,
    now: datetime,
    lease_until: datetime,
) -> bool:
    """Take the connection's lease for this job; False when the message is stale or another
    worker holds a live lease (a redelivery after a rebalance)."""
    result = await session.execute(
        update(Connection)
        .where(
            Connection.id == connection_id,
            Connection.job_token == token,
            (Connection.lease_until.is_(None)) | (Connection.lease_until < now),
        )
        .values(state=JobState.RUNNING, lease_owner=worker, lease_until=lease_until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def records(
    session: AsyncSession, connection_id: uuid.UUID, kind: str, external_ids: Sequence[str]
) -> dict[str, SyncedRecord]:
    if not external_ids:
        return {}
    rows = await session.scalars(
        select(SyncedRecord).where(
            SyncedRecord.connection_id == connection_id,
            SyncedRecord.kind == kind,
            SyncedRecord.external_id.in_(external_ids),
        )
    )
    return {row.external_id: row for row in rows}


async def save_records(
    session: AsyncSession, connection_id: uuid.UUID, kind: str, rows: list[dict[str, object]]
) -> None:
    """Insert or update records in one statement: {external_id, payload, seen_scan}."""
    if not rows:
        return
    statement = insert(SyncedRecord).values(
        [{"connection_id": connection_id, "kind": kind, "removed": False, **row} for row in rows]
    )
    await session.execute(
        statement.on_duplicate_key_update(
            payload=statement.inserted.payload,
            seen_scan=statement.inserted.seen_scan,
            removed=statement.inserted.removed,
        )
    )


async def mark_seen(
    session: AsyncSession,
    connection_id: uuid.UUID,
    kind: str,
    external_ids: Sequence[str],
    scan: int,
) -> None:
    """Records read again unchanged (or skipped as bad this time): seen by this scan."""
    if not external_ids:
        return
    await session.execute(
        update(SyncedRecord)
        .where(
            SyncedRecord.connection_id == connection_id,
            SyncedRecord.kind == kind,
            SyncedRecord.external_id.in_(external_ids),
        )
        .values(seen_scan=scan)
    )


async def unseen_invoices(
    session: AsyncSession, connection_id: uuid.UUID, scan: int, limit: int
) -> Sequence[SyncedRecord]:
    """Invoices imported before that the finished scan did not see: removed upstream."""
    return (
        await session.scalars(
            select(SyncedRecord)
            .where(
                SyncedRecord.connection_id == connection_id,
                SyncedRecord.kind == "i",
                SyncedRecord.seen_scan < scan,
                SyncedRecord.removed.is_(False),
            )
            .limit(limit)
        )
    ).all()
