"""Queries of the email service; they flush at most, the caller commits."""

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from mailer.models import Attempt, Message, MessageStatus, StatusChange, WebhookReceipt


async def get_message(session: AsyncSession, message_id: uuid.UUID) -> Message | None:
    return await session.get(Message, message_id)


async def lock_message(session: AsyncSession, message_id: uuid.UUID) -> Message | None:
    """The message, locked until the transaction ends."""
    query = select(Message).where(Message.id == message_id).with_for_update()
    return await session.scalar(query)


async def owned_message(
    session: AsyncSession, owner_id: uuid.UUID, message_id: uuid.UUID
) -> tuple[Message, list[StatusChange]] | None:
    """The owner's message with its history, in one statement: a row per status change."""
    query = (
        select(Message, StatusChange)
        .outerjoin(StatusChange, StatusChange.message_id == Message.id)
        .where(Message.id == message_id, Message.owner_id == owner_id)
        .order_by(StatusChange.id)
    )
    rows = (await session.execute(query)).all()
    if not rows:
        return None
    return rows[0][0], [row[1] for row in rows if row[1] is not None]


async def list_messages(
    session: AsyncSession,
    owner_id: uuid.UUID,
    invoice_id: uuid.UUID | None,
    statuses: Collection[str],
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[tuple[Message, list[StatusChange]]]:
    """The owner's messages, newest first, optionally of one invoice and in some statuses,
    each with its history: the page is chosen first (its own LIMIT), then joined with the
    status changes, all in one statement."""
    page = select(Message).where(Message.owner_id == owner_id)
    if invoice_id is not None:
        page = page.where(Message.invoice_id == invoice_id)
    if statuses:
        page = page.where(Message.status.in_(statuses))
    if after is not None:
        created_at, message_id = after
        page = page.where(
            or_(
                Message.created_at < created_at,
                and_(Message.created_at == created_at, Message.id < message_id),
            )
        )
    chosen = page.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit).subquery()
    message = aliased(Message, chosen)
    query = (
        select(message, StatusChange)
        .outerjoin(StatusChange, StatusChange.message_id == message.id)
        .order_by(message.created_at.desc(), message.id.desc(), StatusChange.id)
    )
    found: dict[uuid.UUID, tuple[Message, list[StatusChange]]] = {}
    for row, change in (await session.execute(query)).all():
        _, changes = found.setdefault(row.id, (row, []))
        if change is not None:
            changes.append(change)
    return list(found.values())


async def claim_due(
    session: AsyncSession, now: datetime, limit: int, held: Collection[uuid.UUID] = ()
) -> Sequence[Message]:
    """Messages waiting for a provider, or held by a lease that ran out; locked, and skipped
    when another worker has them locked. `held`: this worker's own, never taken again."""
    query = (
        select(Message)
        .where(
            or_(
                and_(Message.status == MessageStatus.QUEUED, Message.next_attempt_at <= now),
                and_(Message.status == MessageStatus.SENDING, Message.lease_until <= now),
            )
        )
        .order_by(Message.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if held:
        query = query.where(Message.id.not_in(list(held)))
    return (await session.scalars(query)).all()


async def last_attempt(session: AsyncSession, message_id: uuid.UUID) -> Attempt | None:
    query = (
        select(Attempt).where(Attempt.message_id == message_id).order_by(Attempt.id.desc()).limit(1)
    )
    return await session.scalar(query)


async def outcomes_since(session: AsyncSession, since: datetime) -> dict[tuple[str, str], int]:
    """(provider, status) -> how many messages reached it since then: sent, delivered,
    bounced."""
    query = (
        select(StatusChange.provider, StatusChange.status, func.count())
        .where(
            StatusChange.occurred_at >= since,
            StatusChange.provider.is_not(None),
            StatusChange.status.in_(
                [MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.BOUNCED]
            ),
        )
        .group_by(StatusChange.provider, StatusChange.status)
    )
    rows = (await session.execute(query)).all()
    return {(str(provider), str(status)): int(count) for provider, status, count in rows}


async def message_by_provider_id(
    session: AsyncSession, provider: str, provider_message_id: str
) -> Message | None:
    query = (
        select(Message)
        .where(Message.provider == provider, Message.provider_message_id == provider_message_id)
        .with_for_update()
    )
    return await session.scalar(query)


async def record_receipt(session: AsyncSession, provider: str, receipt_id: str) -> bool:
    """Record a webhook receipt; False when it was recorded before (a replay)."""
    try:
        async with session.begin_nested():
            session.add(WebhookReceipt(provider=provider, receipt_id=receipt_id[:200]))
            await session.flush()
    except IntegrityError:
        return False
    return True
