"""`user.deleted`: the deletion recorded once, and the deleted account's tokens refused here."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from common.testing.identity import TestIssuer
from payment import consumers
from payment.models import ClosedAccount


def user_deleted(user_id: uuid.UUID, at: datetime) -> CloudEvent:
    """The event as the user service publishes it."""
    return CloudEvent(
        source="/services/user",
        type="user.deleted",
        subject=str(user_id),
        time=at,
        data={"user_id": str(user_id)},
    )


async def handle(sessionmaker: async_sessionmaker[AsyncSession], event: CloudEvent) -> None:
    """As the worker's consumer runs a handler: in a transaction of its own."""
    handler = consumers.HANDLERS[event.type]
    async with sessionmaker() as session, session.begin():
        await handler(session, event)


def test_the_worker_listens_to_user_events() -> None:
    assert consumers.USER_TOPIC in consumers.TOPICS
    assert consumers.HANDLERS["user.deleted"] is consumers.on_user_deleted


async def test_a_deletion_is_recorded_once_with_the_first_events_time(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id = uuid.uuid4()
    first_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    await handle(sessionmaker, user_deleted(user_id, first_at))
    # Another event for the same user (a retried publish has a new id): nothing changes.
    await handle(sessionmaker, user_deleted(user_id, first_at + timedelta(seconds=30)))

    async with sessionmaker() as session:
        rows = await session.scalar(select(func.count()).where(ClosedAccount.owner_id == user_id))
        closed = await session.get(ClosedAccount, user_id)
    assert rows == 1
    assert closed is not None
    assert closed.deleted_at == first_at.replace(tzinfo=None)


async def test_a_deleted_accounts_token_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
    auth: dict[str, str],
) -> None:
    before = await api.get("/api/payments", headers=auth)
    assert before.status_code == 200

    await handle(sessionmaker, user_deleted(owner, datetime.now(UTC)))

    # The gate reloads closed accounts at most every two seconds: allow it a few.
    for _ in range(50):
        response = await api.get("/api/payments", headers=auth)
        if response.status_code == 401:
            break
        await asyncio.sleep(0.2)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    wallet = await api.get("/api/wallet", headers=auth)
    assert wallet.status_code == 401
    someone_else = await api.get("/api/payments", headers=test_issuer.headers(uuid.uuid4()))
    assert someone_else.status_code == 200
