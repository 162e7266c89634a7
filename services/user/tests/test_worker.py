"""The worker's jobs: events leave the outbox for user.events in order, expired rows are
cleaned up, and the signing key rotates when due."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.kafka import ensure_topics
from common.outbox import OutboxRelay, utcnow
from common.testing.plugin import next_event
from user.config import UserSettings
from user.crypto import SecretBox, sha256_hex
from user.events import TOPIC
from user.models import LoginState, OutboxMessage, RefreshToken
from user.worker import clean_up, rotate_keys_when_due

from .helpers import bearer, sign_in, start_login


@pytest.fixture
async def user_events(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    await ensure_topics(kafka_bootstrap, [TOPIC])
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    yield consumer
    await consumer.stop()


async def test_a_users_events_reach_the_topic_in_order(
    browser: httpx.AsyncClient,
    subject: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka_bootstrap: str,
    user_events: AIOKafkaConsumer,
) -> None:
    tokens = await sign_in(browser, subject)
    await browser.patch("/api/users/me", json={"company_name": "Acme"}, headers=bearer(tokens))
    await browser.delete("/api/users/me", headers=bearer(tokens))
    relay = OutboxRelay(sessionmaker, OutboxMessage, kafka_bootstrap, idle_seconds=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        received = [
            await next_event(user_events, lambda e: e.subject == tokens["user_id"])
            for _ in range(3)
        ]
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)

    assert [e.type for e in received] == ["user.registered", "user.updated", "user.deleted"]
    assert received[1].data["company_name"] == "Acme"
    assert received[2].data == {"user_id": tokens["user_id"]}
    async with sessionmaker() as session:
        left = await session.scalar(
            select(func.count()).where(OutboxMessage.message_key == tokens["user_id"])
        )
    assert left == 0


async def test_expired_sign_ins_and_refresh_tokens_are_cleaned_up(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    state = parse_qs(urlsplit(await start_login(browser)).query)["state"][0]
    fresh_state = parse_qs(urlsplit(await start_login(browser)).query)["state"][0]
    tokens = await sign_in(browser, subject)
    past = utcnow() - timedelta(seconds=1)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(LoginState)
            .where(LoginState.state_hash == sha256_hex(state))
            .values(expires_at=past)
        )
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == sha256_hex(tokens["refresh_token"]))
            .values(expires_at=past)
        )

    removed = await clean_up(sessionmaker)

    assert removed >= 2
    async with sessionmaker() as session:
        states = set(await session.scalars(select(LoginState.state_hash)))
        token = await session.scalar(
            select(RefreshToken).where(
                RefreshToken.token_hash == sha256_hex(tokens["refresh_token"])
            )
        )
    assert sha256_hex(state) not in states
    assert sha256_hex(fresh_state) in states
    assert token is None


async def test_the_signing_key_rotates_only_when_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: UserSettings,
    browser: httpx.AsyncClient,
) -> None:
    await sign_in(browser, f"due-{uuid.uuid4().hex[:6]}")
    box = SecretBox(settings.secret_key.get_secret_value())

    not_due = await rotate_keys_when_due(sessionmaker, settings, box)
    due = await rotate_keys_when_due(
        sessionmaker, settings.model_copy(update={"signing_key_rotation_seconds": 0}), box
    )

    assert not_due is None
    assert due is not None
