"""The invoice service's worker: the outbox relay, the past-due schedule and the consumers."""

import asyncio
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.logging import configure_logging, get_logger
from common.runtime import run_every, run_loops
from common.worker import messaging_loops
from invoice import consumers, service
from invoice.config import get_settings
from invoice.models import InboxMessage, OutboxMessage

log = get_logger(__name__)


async def sweep_past_due(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Move every pending invoice whose due date has passed, one committed batch at a time."""
    moved = 0
    while True:
        async with sessionmaker() as session, session.begin():
            count = await service.mark_past_due(session, service.today_utc())
        moved += count
        if count == 0:
            break
    if moved:
        log.info("invoices_past_due", count=moved)
    return moved


async def run() -> None:
    settings = get_settings()
    configure_logging(f"{settings.service_name}-worker", settings.log_level, settings.log_format)
    engine = create_engine(settings.database_url.get_secret_value(), pool_size=4)
    sessionmaker = create_sessionmaker(engine)

    async def past_due_schedule(stop: asyncio.Event) -> None:
        await run_every(
            stop,
            settings.past_due_sweep_seconds,
            partial(sweep_past_due, sessionmaker),
            "past_due_sweep",
        )

    loops = messaging_loops(
        sessionmaker=sessionmaker,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        outbox_model=OutboxMessage,
        inbox_model=InboxMessage,
        consumer_group=consumers.CONSUMER_GROUP,
        topics=consumers.TOPICS,
        handlers=consumers.HANDLERS,
    )
    loops += [past_due_schedule]
    try:
        await run_loops(loops)
    finally:
        await engine.dispose()


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
