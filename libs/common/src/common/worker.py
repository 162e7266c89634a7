"""What every service's worker runs besides its own schedules: the outbox relay, and the
service's consumer group with its inbox when it consumes any topic."""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.inbox import EventConsumer, Handler, InboxMessageMixin
from common.outbox import OutboxMessageMixin, OutboxRelay
from common.runtime import Loop


def messaging_loops(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    bootstrap_servers: str,
    outbox_model: type[OutboxMessageMixin],
    inbox_model: type[InboxMessageMixin],
    consumer_group: str,
    topics: list[str],
    handlers: dict[str, Handler],
) -> list[Loop]:
    loops: list[Loop] = [OutboxRelay(sessionmaker, outbox_model, bootstrap_servers).run]
    if topics:
        consumer = EventConsumer(
            name=consumer_group,
            topics=topics,
            handlers=handlers,
            sessionmaker=sessionmaker,
            inbox_model=inbox_model,
            bootstrap_servers=bootstrap_servers,
        )
        loops.append(consumer.run)
    return loops
