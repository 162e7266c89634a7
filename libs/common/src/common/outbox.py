"""The transactional outbox: an event is a row written in the same transaction as the change
it describes, and a relay publishes the rows to Kafka afterwards.

A process that dies between the commit and the publish leaves the row in place, and the next
relay publishes it: at-least-once delivery, made exactly-once in effect by the consumers' inbox.
"""

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import BigInteger, DateTime, String, Text, delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from common.events import CLOUDEVENTS_CONTENT_TYPE, CloudEvent
from common.kafka import create_producer, ensure_topics
from common.logging import get_logger
from common.runtime import sleep_unless

log = get_logger(__name__)


def utcnow() -> datetime:
    """Now, in UTC, to the second, without tzinfo: DATETIME columns hold UTC by convention
    and keep whole seconds, so a value a response shows is the value a later read returns."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


class OutboxMessageMixin:
    """Columns of a service's `outbox_messages` table; the service maps it on its own base."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    topic: Mapped[str] = mapped_column(String(200))
    message_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    if TYPE_CHECKING:
        # The declarative base of the service that maps this mixin supplies the constructor.
        def __init__(self, **columns: Any) -> None: ...


def add_event(
    session: AsyncSession, model: type[OutboxMessageMixin], topic: str, event: CloudEvent
) -> None:
    """Stage an event in the caller's transaction; it is published only if that commits."""
    session.add(
        model(
            event_id=event.id,
            topic=topic,
            message_key=event.subject,
            payload=event.model_dump_json(),
        )
    )


class OutboxRelay:
    """Publishes outbox rows in id order and deletes them once the broker has them.

    The batch is read FOR UPDATE, so a second relay of the same service waits rather than
    publishing the same rows again; rows are deleted only after every send is acknowledged.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        model: type[OutboxMessageMixin],
        bootstrap_servers: str,
        batch_size: int = 200,
        idle_seconds: float = 0.2,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.model = model
        self.bootstrap_servers = bootstrap_servers
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self._known_topics: set[str] = set()

    async def publish_batch(self, producer: AIOKafkaProducer) -> int:
        """Publish up to one batch; the number of events published."""
        model = self.model
        async with self.sessionmaker() as session, session.begin():
            rows = (
                await session.scalars(
                    select(model).order_by(model.id).limit(self.batch_size).with_for_update()
                )
            ).all()
            if not rows:
                return 0
            await self._ensure_topics({row.topic for row in rows})
            headers = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
            pending = [
                await producer.send(
                    row.topic,
                    value=row.payload.encode(),
                    key=row.message_key.encode(),
                    headers=headers,
                )
                for row in rows
            ]
            await asyncio.gather(*pending)
            await session.execute(delete(model).where(model.id.in_([row.id for row in rows])))
        log.debug("outbox_published", count=len(rows))
        return len(rows)

    async def _ensure_topics(self, topics: set[str]) -> None:
        missing = topics - self._known_topics
        if missing:
            await ensure_topics(self.bootstrap_servers, sorted(missing))
            self._known_topics |= missing

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until stop is set; broker or database outages wait and resume."""
        delay = 0.5
        while not stop.is_set():
            producer = create_producer(self.bootstrap_servers)
            try:
                await producer.start()
                while not stop.is_set():
                    if await self.publish_batch(producer) == 0:
                        await sleep_unless(stop, self.idle_seconds)
                    delay = 0.5
            except (KafkaError, OSError, DBAPIError) as exc:
                # The dev broker forgets topics when it restarts: check them again next time.
                self._known_topics.clear()
                log.warning("outbox_relay_waiting", error_type=type(exc).__name__, retry_in=delay)
                await sleep_unless(stop, delay)
                delay = min(delay * 2, 10)
            finally:
                await producer.stop()
