"""The wallet balance on the profile from the payment service's `wallet.*` events: only a
newer ledger entry in the wallet's currency moves it, events for accounts this service does
not know are let go, and the worker's consumer group does the same on the real broker."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from common.inbox import EventConsumer
from common.kafka import ensure_topics
from user import consumers
from user.models import InboxMessage, User

from .helpers import bearer, outbox_events, sign_in


def wallet_event(
    owner_id: uuid.UUID,
    sequence: int,
    balance_after: str,
    *,
    amount: str = "5.00",
    currency: str = "USD",
    credited: bool = True,
) -> CloudEvent:
    """An event shaped as the payment service publishes it."""
    return CloudEvent(
        source="/services/payment",
        type="wallet.credited" if credited else "wallet.debited",
        subject=str(owner_id),
        data={
            "owner_id": str(owner_id),
            "transaction_id": sequence * 10,
            "currency": currency,
            "amount": amount,
            "balance_after": balance_after,
            "sequence": sequence,
            "reference": f"topup:{uuid.uuid4().hex[:8]}",
        },
    )


async def handle(sessionmaker: async_sessionmaker[AsyncSession], *events: CloudEvent) -> None:
    """Each event through its handler, in its own transaction, as the consumer runs it."""
    for event in events:
        async with sessionmaker() as session, session.begin():
            await consumers.HANDLERS[event.type](session, event)


async def wallet_of(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: uuid.UUID
) -> tuple[Decimal, str, int]:
    async with sessionmaker() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user.wallet_balance, user.wallet_currency, user.wallet_sequence


@pytest.fixture
async def account(browser: httpx.AsyncClient, subject: str) -> dict[str, Any]:
    """A signed-in user's tokens; their wallet is in USD, the default currency."""
    return await sign_in(browser, subject)


# --- the handler ------------------------------------------------------------------------------


async def test_the_profile_shows_the_balance_after_the_latest_entry(
    browser: httpx.AsyncClient,
    account: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id = uuid.UUID(account["user_id"])

    await handle(
        sessionmaker,
        wallet_event(user_id, 1, "10.00", amount="10.00"),
        wallet_event(user_id, 2, "25.00", amount="15.00"),
        wallet_event(user_id, 3, "24.50", amount="0.50", credited=False),
    )

    me = (await browser.get("/api/users/me", headers=bearer(account))).json()
    assert (me["wallet_balance"], me["wallet_currency"]) == ("24.50", "USD")
    assert await wallet_of(sessionmaker, user_id) == (Decimal("24.50"), "USD", 3)


async def test_an_older_entry_arriving_late_never_moves_the_balance_back(
    account: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    user_id = uuid.UUID(account["user_id"])
    first = wallet_event(user_id, 1, "10.00")
    second = wallet_event(user_id, 2, "30.00")
    third = wallet_event(user_id, 3, "12.00", credited=False)

    await handle(sessionmaker, first, third, second)
    assert await wallet_of(sessionmaker, user_id) == (Decimal("12.00"), "USD", 3)

    await handle(sessionmaker, first)
    assert await wallet_of(sessionmaker, user_id) == (Decimal("12.00"), "USD", 3)


async def test_an_entry_whose_sequence_was_applied_already_changes_nothing(
    account: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    user_id = uuid.UUID(account["user_id"])
    entry = wallet_event(user_id, 1, "10.00")
    await handle(sessionmaker, entry)

    # The same event again, and another event that claims the same ledger entry.
    await handle(sessionmaker, entry, wallet_event(user_id, 1, "99.00"))

    assert await wallet_of(sessionmaker, user_id) == (Decimal("10.00"), "USD", 1)


async def test_entries_in_another_currency_are_not_shown_and_do_not_block_the_wallets(
    account: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    user_id = uuid.UUID(account["user_id"])
    await handle(sessionmaker, wallet_event(user_id, 1, "10.00"))

    # A euro account keeps its own sequence; its entry 7 says nothing about the dollars.
    await handle(sessionmaker, wallet_event(user_id, 7, "500.00", currency="EUR"))
    assert await wallet_of(sessionmaker, user_id) == (Decimal("10.00"), "USD", 1)

    await handle(sessionmaker, wallet_event(user_id, 2, "15.00"))
    assert await wallet_of(sessionmaker, user_id) == (Decimal("15.00"), "USD", 2)


async def test_an_event_for_an_unknown_user_is_let_go_with_a_log_line(
    sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="user")
    stranger = uuid.uuid4()

    await handle(sessionmaker, wallet_event(stranger, 1, "10.00"))

    assert "wallet_event_without_account" in caplog.text
    async with sessionmaker() as session:
        assert await session.get(User, stranger) is None


async def test_a_balance_change_announces_nothing(
    account: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await handle(sessionmaker, wallet_event(uuid.UUID(account["user_id"]), 1, "10.00"))

    # The balance is the payment service's fact, already published by it.
    events = await outbox_events(sessionmaker, account["user_id"])
    assert [event.type for event in events] == ["user.registered"]


async def test_a_balance_the_column_cannot_hold_is_refused_rather_than_rounded(
    account: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    user_id = uuid.UUID(account["user_id"])

    with pytest.raises(ValueError, match="balance_after"):
        await handle(sessionmaker, wallet_event(user_id, 1, "10.005"))

    assert await wallet_of(sessionmaker, user_id) == (Decimal("0.00"), "USD", 0)


# --- through the worker's consumer group ------------------------------------------------------


@pytest.fixture
async def running_consumer(
    kafka_bootstrap: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[None]:
    """The worker's consumer group, as the worker wires it."""
    consumer = EventConsumer(
        name=consumers.CONSUMER_GROUP,
        topics=consumers.TOPICS,
        handlers=consumers.HANDLERS,
        sessionmaker=sessionmaker,
        inbox_model=InboxMessage,
        bootstrap_servers=kafka_bootstrap,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 20)


async def publish(bootstrap: str, key: str, *events: CloudEvent) -> None:
    """Send the events in order under one key, so they arrive in that order."""
    await ensure_topics(bootstrap, consumers.TOPICS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                consumers.PAYMENT_TOPIC, event.model_dump_json().encode(), key=key.encode()
            )
    finally:
        await producer.stop()


async def test_the_worker_keeps_the_balance_from_the_payment_topic(
    running_consumer: None,
    kafka_bootstrap: str,
    browser: httpx.AsyncClient,
    account: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id = uuid.UUID(account["user_id"])
    first, second = wallet_event(user_id, 1, "20.00"), wallet_event(user_id, 2, "12.00")
    stranger = wallet_event(uuid.uuid4(), 1, "1.00")
    other_type = CloudEvent(
        source="/services/payment",
        type="payment.succeeded",
        subject=str(user_id),
        data={"owner_id": str(user_id)},
    )
    last = wallet_event(user_id, 3, "7.50", credited=False)

    # A redelivery, an older entry after a newer one, an unknown user and an event type this
    # service does not read, all before the last entry on the same partition.
    await publish(
        kafka_bootstrap, str(user_id), first, second, second, first, stranger, other_type, last
    )

    for _ in range(200):
        if (await wallet_of(sessionmaker, user_id))[2] == 3:
            break
        await asyncio.sleep(0.1)
    me = (await browser.get("/api/users/me", headers=bearer(account))).json()
    assert (me["wallet_balance"], me["wallet_currency"]) == ("7.50", "USD")
    async with sessionmaker() as session:
        handled = set(
            await session.scalars(
                select(InboxMessage.event_id).where(
                    InboxMessage.consumer == consumers.CONSUMER_GROUP
                )
            )
        )
    # The unknown user's event was handled (its inbox row committed), not dead-lettered.
    assert {first.id, second.id, stranger.id, last.id} <= handled
