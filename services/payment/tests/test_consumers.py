"""`user.deleted`: the deletion recorded once, and the deleted account's tokens refused here.
`email.status_changed`: a failed send's fee given back once; other statuses keep it."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from common.testing.identity import TestIssuer
from payment import consumers, wallet
from payment.models import ClosedAccount, EntryType


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


# --- email.status_changed: a failed send's fee comes back ----------------------------------


def email_status_changed(owner_id: uuid.UUID, status: str, reference: str | None) -> CloudEvent:
    """The event as the email service publishes it (the fields this service reads, and more)."""
    fee = (
        None if reference is None else {"reference": reference, "amount": "0.50", "currency": "USD"}
    )
    return CloudEvent(
        source="/services/email",
        type="email.status_changed",
        subject=str(owner_id),
        data={
            "message_id": str(uuid.uuid4()),
            "owner_id": str(owner_id),
            "invoice_id": str(uuid.uuid4()),
            "kind": "invoice",
            "status": status,
            "previous_status": "queued",
            "provider": None,
            "reason": "no provider accepted it; gave up",
            "fee": fee,
            "occurred_at": datetime.now(UTC).isoformat(),
        },
    )


async def wallet_with_fee(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID, reference: str
) -> None:
    async with sessionmaker() as session, session.begin():
        await wallet.credit(
            session, owner, "USD", Decimal("10.00"), EntryType.TOPUP, f"topup-{owner}", "Top-up"
        )
        await wallet.debit_fee(session, owner, "USD", Decimal("0.50"), reference, "Invoice email")


async def balance(sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID) -> Decimal:
    async with sessionmaker() as session:
        [account] = await wallet.balances(session, owner)
        return account.balance


def test_the_worker_listens_to_email_events() -> None:
    assert consumers.EMAIL_TOPIC in consumers.TOPICS
    assert consumers.HANDLERS["email.status_changed"] is consumers.on_email_status_changed


async def test_a_failed_email_gives_its_fee_back_once(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    reference = f"email-send:{uuid.uuid4()}"
    await wallet_with_fee(sessionmaker, owner, reference)
    assert await balance(sessionmaker, owner) == Decimal("9.50")

    await handle(sessionmaker, email_status_changed(owner, "failed", reference))
    await handle(sessionmaker, email_status_changed(owner, "failed", reference))

    assert await balance(sessionmaker, owner) == Decimal("10.00")


@pytest.mark.parametrize("status", ["queued", "sent", "delivered", "bounced"])
async def test_other_statuses_keep_the_fee(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID, status: str
) -> None:
    reference = f"email-send:{uuid.uuid4()}"
    await wallet_with_fee(sessionmaker, owner, reference)
    await handle(sessionmaker, email_status_changed(owner, status, reference))
    assert await balance(sessionmaker, owner) == Decimal("9.50")


async def test_a_failed_notice_without_fee_changes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    await handle(sessionmaker, email_status_changed(owner, "failed", None))
    await handle(sessionmaker, email_status_changed(owner, "failed", "email-send:never-taken"))
    async with sessionmaker() as session:
        assert await wallet.balances(session, owner) == []
