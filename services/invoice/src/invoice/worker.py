"""The invoice service's worker: the outbox relay, the past-due schedule and the consumers."""

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.idempotency import purge_schedule
from common.logging import get_logger
from common.worker import Schedule, run_worker
from invoice import consumers, service
from invoice.config import get_settings
from invoice.models import IdempotencyKey, InboxMessage, OutboxMessage

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
    await run_worker(
        settings,
        outbox_model=OutboxMessage,
        inbox_model=InboxMessage,
        consumer_group=consumers.CONSUMER_GROUP,
        topics=consumers.TOPICS,
        handlers=consumers.HANDLERS,
        schedules=[
            Schedule("past_due_sweep", settings.past_due_sweep_seconds, sweep_past_due),
            purge_schedule(IdempotencyKey),
        ],
    )


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
