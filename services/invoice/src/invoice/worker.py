"""The invoice service's worker: the outbox relay, the past-due schedule and the consumers."""

import asyncio
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.inbox import EventConsumer
from common.logging import configure_logging, get_logger
from common.outbox import OutboxRelay
from common.runtime import Loop, run_every, run_loops
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
    relay = OutboxRelay(sessionmaker, OutboxMessage, settings.kafka_bootstrap_servers)

    async def past_due_schedule(stop: asyncio.Event) -> None:
        await run_every(
            stop,
            settings.past_due_sweep_seconds,
            partial(sweep_past_due, sessionmaker),
            "past_due_sweep",
        )

    loops: list[Loop] = [relay.run, past_due_schedule]
    if consumers.TOPICS:
        loops.append(
            EventConsumer(
                name=consumers.CONSUMER_GROUP,
                topics=consumers.TOPICS,
                handlers=consumers.HANDLERS,
                sessionmaker=sessionmaker,
                inbox_model=InboxMessage,
                bootstrap_servers=settings.kafka_bootstrap_servers,
            ).run
        )
    try:
        await run_loops(loops)
    finally:
        await engine.dispose()


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
