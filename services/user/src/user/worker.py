"""The user service's worker: the outbox relay, signing-key rotation, clean-up, consumers."""

import asyncio
from datetime import timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.logging import configure_logging, get_logger
from common.runtime import run_every, run_loops
from common.worker import messaging_loops
from user import consumers, service
from user.config import UserSettings, get_settings
from user.crypto import SecretBox
from user.models import InboxMessage, OutboxMessage

log = get_logger(__name__)


async def rotate_keys_when_due(
    sessionmaker: async_sessionmaker[AsyncSession], settings: UserSettings, box: SecretBox
) -> str | None:
    """Rotate the signing key once it has signed for the configured period."""
    async with sessionmaker() as session, session.begin():
        return await service.rotate_signing_keys(
            session,
            settings,
            box,
            only_if_older_than=timedelta(seconds=settings.signing_key_rotation_seconds),
        )


async def clean_up(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Remove expired sign-ins in progress and expired refresh tokens."""
    async with sessionmaker() as session, session.begin():
        removed = await service.clean_up(session)
    if removed:
        log.info("expired_rows_removed", count=removed)
    return removed


async def run() -> None:
    settings = get_settings()
    configure_logging(f"{settings.service_name}-worker", settings.log_level, settings.log_format)
    engine = create_engine(settings.database_url.get_secret_value(), pool_size=4)
    sessionmaker = create_sessionmaker(engine)
    box = SecretBox(settings.secret_key.get_secret_value())

    async def key_rotation_schedule(stop: asyncio.Event) -> None:
        await run_every(
            stop,
            settings.key_rotation_check_seconds,
            partial(rotate_keys_when_due, sessionmaker, settings, box),
            "signing_key_rotation",
        )

    async def clean_up_schedule(stop: asyncio.Event) -> None:
        await run_every(stop, settings.cleanup_seconds, partial(clean_up, sessionmaker), "clean_up")

    loops = messaging_loops(
        sessionmaker=sessionmaker,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        outbox_model=OutboxMessage,
        inbox_model=InboxMessage,
        consumer_group=consumers.CONSUMER_GROUP,
        topics=consumers.TOPICS,
        handlers=consumers.HANDLERS,
    )
    loops += [key_rotation_schedule, clean_up_schedule]
    try:
        await run_loops(loops)
    finally:
        await engine.dispose()


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
