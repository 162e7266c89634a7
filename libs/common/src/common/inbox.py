"""The consumer side: an inbox row per handled event, so a redelivered event changes nothing.

The inbox row and the handler's effects commit in one transaction, and the offset is committed
only after it; the events of one fetch share that transaction while all of them succeed. A
failing handler is retried with backoff; after the last attempt the message goes to the
consumer group's dead-letter topic (at once if its data does not fit the handler's model). A
database or broker outage is not a failure of the message: the consumer waits and tries the
same message again, for as long as it takes.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy import DateTime, String, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from common.errors import database_unavailable
from common.events import CloudEvent
from common.kafka import (
    DEFAULT_FETCH_MAX_WAIT_MS,
    create_consumer,
    create_producer,
    ensure_topics,
    rewind_partitions_past_their_end,
    stop_client,
)
from common.logging import get_logger
from common.metrics import DEAD_LETTERS, HANDLER_DURATION, HANDLER_RETRIES, LagGauge
from common.outbox import utcnow
from common.runtime import sleep_unless
from common.tracing import handling

log = get_logger(__name__)

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


class InboxMessageMixin:
    """Columns of a service's `inbox_messages` table: one row per (consumer, event) handled."""

    __tablename__ = "inbox_messages"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    handled_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    if TYPE_CHECKING:
        # The declarative base of the service that maps this mixin supplies the constructor.
        def __init__(self, **columns: Any) -> None: ...


def _is_outage(exc: BaseException) -> bool:
    """A lost connection or an unreachable server, as opposed to a bad message: the broker's,
    or the database's as common.errors tells them (its driver's unwrapped errors too, which
    would otherwise count as the handler's failures and dead-letter a good event)."""
    if isinstance(exc, (OSError, KafkaError)) or database_unavailable(exc):
        return True
    if isinstance(exc, DBAPIError):
        # MySQL client errors 2000-2099 are connection failures ("can't connect", "gone away").
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        return isinstance(code, int) and 2000 <= code < 2100
    return False


class PartitionsLogged(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs the partitions the group gives this process and takes away from it: with several
    workers of a service, which one reads what, and when a dead one's partitions moved."""

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info("partitions_revoked", consumer=self.consumer, partitions=_named(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions_assigned", consumer=self.consumer, partitions=_named(assigned))


def _named(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}:{tp.partition}" for tp in partitions)


class EventConsumer:
    """Runs one consumer group over some topics, dispatching by event type.

    The records of one fetch are handled in one transaction and their offsets committed once
    after it: one commit and one offset commit per fetch rather than per event. When any of
    them fails, the transaction is rolled back and the fetch is handled again one event per
    transaction, in order, with the retries, dead-lettering and outage waits of each. So a
    handler may run twice for one event, as it may after any redelivery: what it does outside
    the transaction must bear that.
    """

    def __init__(
        self,
        *,
        name: str,
        topics: list[str],
        handlers: dict[str, Handler],
        sessionmaker: async_sessionmaker[AsyncSession],
        inbox_model: type[InboxMessageMixin],
        bootstrap_servers: str,
        max_attempts: int = 5,
        retry_base_seconds: float = 0.5,
        fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
        max_batch: int = 500,
    ) -> None:
        self.name = name
        self.topics = topics
        self.handlers = handlers
        self.sessionmaker = sessionmaker
        self.inbox_model = inbox_model
        self.bootstrap_servers = bootstrap_servers
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.max_batch = max_batch
        self.dead_letter_topic = f"{name}.dlt"
        self.lag = LagGauge(name)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until stop is set, reconnecting after broker outages."""
        delay = 0.5
        while not stop.is_set():
            consumer = create_consumer(
                self.bootstrap_servers,
                self.topics,
                self.name,
                self.fetch_max_wait_ms,
                PartitionsLogged(self.name),
            )
            producer = create_producer(self.bootstrap_servers)
            try:
                await ensure_topics(self.bootstrap_servers, [*self.topics, self.dead_letter_topic])
                await consumer.start()
                await producer.start()
                delay = 0.5
                while not stop.is_set():
                    fetched = await consumer.getmany(timeout_ms=500, max_records=self.max_batch)
                    records = [record for batch in fetched.values() for record in batch]
                    if not records:
                        await rewind_partitions_past_their_end(consumer, self.name)
                        await self.lag.measure(consumer)
                        continue
                    handled = await self._process_all(records, producer, stop)
                    if handled:
                        await consumer.commit(
                            {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
                        )
                    await self.lag.measure(consumer)
            except (KafkaError, OSError) as exc:
                log.warning(
                    "consumer_waiting",
                    consumer=self.name,
                    error_type=type(exc).__name__,
                    retry_in=delay,
                )
                await sleep_unless(stop, delay)
                delay = min(delay * 2, 10)
            finally:
                self.lag.clear()
                await stop_client(consumer)
                await stop_client(producer)

    async def _process_all(
        self, records: list[ConsumerRecord], producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> bool:
        """Handle one fetch; False when stopped before the end (offsets stay uncommitted)."""
        if await self._handle_together(records):
            return True
        for record in records:
            await self._process(record, producer, stop)
            if stop.is_set():
                return False
        return True

    async def _handle_together(self, records: list[ConsumerRecord]) -> bool:
        """Handle every record in one transaction; False, with nothing kept, when one of them
        cannot be (undecodable, a handler failed, the database is down)."""
        events: list[tuple[CloudEvent, Handler]] = []
        for record in records:
            try:
                event = CloudEvent.model_validate_json(record.value)
            except (ValidationError, ValueError, TypeError):
                return False
            handler = self.handlers.get(event.type)
            if handler is not None:
                events.append((event, handler))
        if not events:
            return True
        inbox = self.inbox_model
        try:
            async with self.sessionmaker() as session, session.begin():
                ids = {event.id for event, _ in events}
                seen = set(
                    await session.scalars(
                        select(inbox.event_id).where(
                            inbox.consumer == self.name, inbox.event_id.in_(ids)
                        )
                    )
                )
                fresh = []
                for event, handler in events:
                    if event.id not in seen:
                        seen.add(event.id)  # a redelivery within the same fetch, too
                        fresh.append((event, handler))
                if not fresh:
                    return True
                # One multi-row INSERT: tracked ORM objects would cost more than the handlers.
                await session.execute(
                    insert(inbox),
                    [{"consumer": self.name, "event_id": event.id} for event, _ in fresh],
                )
                for event, handler in fresh:
                    with (
                        structlog.contextvars.bound_contextvars(
                            event_id=event.id, event_type=event.type
                        ),
                        handling(event, self.name) as span,
                    ):
                        await self._timed(handler, session, event)
                        if span.is_recording():
                            # The handler's writes, in its trace rather than in the
                            # fetch's commit: one more round trip per traced event.
                            await session.flush()
        except Exception as exc:
            log.debug("consumer_batch_failed", consumer=self.name, error_type=type(exc).__name__)
            return False
        return True

    async def _process(
        self, record: ConsumerRecord, producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        try:
            event = CloudEvent.model_validate_json(record.value)
        except (ValidationError, ValueError, TypeError):
            await self._dead_letter(record, producer, "undecodable envelope")
            return
        handler = self.handlers.get(event.type)
        if handler is None:
            return
        attempt = 0
        with structlog.contextvars.bound_contextvars(event_id=event.id, event_type=event.type):
            while not stop.is_set():
                try:
                    with handling(event, self.name):
                        await self._handle_once(event, handler)
                    return
                except Exception as exc:
                    if _is_outage(exc):
                        log.warning("consumer_dependency_down", error_type=type(exc).__name__)
                        await sleep_unless(stop, 2)
                        continue
                    attempt += 1
                    log.warning(
                        "event_handler_failed", attempt=attempt, error_type=type(exc).__name__
                    )
                    # Data that does not fit the consumer's model will not fit it next time
                    # either: straight to the dead-letter topic, without holding back the
                    # events behind it for a round of retries.
                    if attempt >= self.max_attempts or isinstance(exc, ValidationError):
                        await self._dead_letter(record, producer, type(exc).__name__)
                        return
                    HANDLER_RETRIES.labels(self.name, event.type).inc()
                    await sleep_unless(stop, self.retry_base_seconds * 2 ** (attempt - 1))

    async def _handle_once(self, event: CloudEvent, handler: Handler) -> None:
        inbox = self.inbox_model
        async with self.sessionmaker() as session, session.begin():
            seen = await session.scalar(
                select(inbox.event_id).where(
                    inbox.consumer == self.name, inbox.event_id == event.id
                )
            )
            if seen is not None:
                log.debug("event_already_handled")
                return
            session.add(inbox(consumer=self.name, event_id=event.id))
            try:
                await session.flush()
            except IntegrityError:
                # Another member of the group handled it a moment ago.
                await session.rollback()
                return
            await self._timed(handler, session, event)

    async def _timed(self, handler: Handler, session: AsyncSession, event: CloudEvent) -> None:
        started = time.perf_counter()
        try:
            await handler(session, event)
        finally:
            HANDLER_DURATION.labels(self.name, event.type).observe(time.perf_counter() - started)

    async def _dead_letter(
        self, record: ConsumerRecord, producer: AIOKafkaProducer, reason: str
    ) -> None:
        await producer.send_and_wait(
            self.dead_letter_topic,
            value=record.value,
            key=record.key,
            headers=[
                *(record.headers or ()),
                ("x-dead-letter-reason", reason.encode()),
                ("x-original-topic", record.topic.encode()),
                ("x-original-partition", str(record.partition).encode()),
                ("x-original-offset", str(record.offset).encode()),
            ],
        )
        DEAD_LETTERS.labels(self.name, record.topic).inc()
        log.error(
            "event_dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason,
        )
