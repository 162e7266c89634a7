"""The user service's worker: the outbox relay, signing-key rotation, clean-up, and the
consumer of the payment service's wallet events."""

import asyncio
from datetime import timedelta
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.logging import get_logger
from common.worker import Schedule, run_worker
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
    box = SecretBox(settings.secret_key.get_secret_value())
    rotation = partial(rotate_keys_when_due, settings=settings, box=box)
    await run_worker(
        settings,
        outbox_model=OutboxMessage,
        inbox_model=InboxMessage,
        consumer_group=consumers.CONSUMER_GROUP,
        topics=consumers.TOPICS,
        handlers=consumers.HANDLERS,
        schedules=[
            Schedule("signing_key_rotation", settings.key_rotation_check_seconds, rotation),
            Schedule("clean_up", settings.cleanup_seconds, clean_up),
        ],
    )


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
