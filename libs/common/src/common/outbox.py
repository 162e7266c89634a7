"""The transactional outbox: an event is a row written in the same transaction as the change
it describes, and a relay publishes the rows to Kafka afterwards.

A process that dies between the commit and the publish leaves the row in place, and the next
relay publishes it: at-least-once delivery, made exactly-once in effect by the consumers' inbox.

An idle relay waits inside the database, in a statement that sleeps unless the outbox holds
rows, on a connection holding a named lock. A process that commits an event interrupts that
statement (`KILL QUERY` of the lock's holder), so the relay starts publishing within a round
trip of the commit instead of at its next look; the sleep's timeout covers a wake-up that
never came (the committing process died, or its database connection failed). MariaDB and
MySQL have no LISTEN/NOTIFY; this is the nearest they offer, and it needs no other server.
"""

import asyncio
import contextlib
import contextvars
import functools
import weakref
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from sqlalchemy import BigInteger, DateTime, Row, String, Text, delete, func, select, text
from sqlalchemy.event import listen
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, mapped_column

from common.errors import database_unavailable
from common.events import CLOUDEVENTS_CONTENT_TYPE, CloudEvent
from common.kafka import create_producer, ensure_topics, stop_client
from common.logging import get_logger
from common.metrics import OUTBOX, OUTBOX_PUBLISHED
from common.runtime import sleep_unless
from common.tracing import publishing, trace_context

log = get_logger(__name__)

# MySQL error codes the doorbell meets: a statement interrupted by KILL QUERY, and KILL of a
# thread that does not exist (IS_USED_LOCK is NULL: no relay holds the lock).
ER_QUERY_INTERRUPTED = 1317
ER_NO_SUCH_THREAD = 1094

# The named lock a running relay holds on the connection it waits on. Lock names are
# server-wide, so the schema is part of it; MySQL refuses names over 64 characters.
LOCK_NAME = "LEFT(CONCAT('outbox.', DATABASE(), '.', :table), 64)"


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
    """Stage an event in the caller's transaction; it is published only if that commits, and
    the relay is woken as soon as it has. The event carries the current trace context."""
    if event.traceparent is None and (context := trace_context()):
        event = event.model_copy(update=context)
    session.add(
        model(
            event_id=event.id,
            topic=topic,
            message_key=event.subject,
            payload=event.model_dump_json(),
        )
    )
    _wake_relay_after_commit(session, _table_name(model))


def _table_name(model: type[OutboxMessageMixin]) -> str:
    return str(model.__table__.name)  # type: ignore[attr-defined]


# --- waking the relay -----------------------------------------------------------------------

_STAGED = "common.outbox.staged"  # session.info: (engine, tables staged in this transaction)


def _wake_relay_after_commit(session: AsyncSession, table: str) -> None:
    engine = session.bind
    if not isinstance(engine, AsyncEngine):
        return  # a session bound otherwise: the relay finds the row on its next look
    staged = session.info.get(_STAGED)
    if staged is None:
        tables: set[str] = set()
        staged = session.info[_STAGED] = (engine, tables)
        listen(session.sync_session, "after_commit", _ring_for_staged)
    staged[1].add(table)


def _ring_for_staged(session: Session) -> None:
    engine, tables = session.info[_STAGED]
    for table in tables:
        wake_relay_soon(engine, table)
    tables.clear()


def wake_relay_soon(engine: AsyncEngine, table: str = "outbox_messages") -> None:
    """Wake the relay of this schema's outbox in the background, as `add_event` does after a
    commit; for code that writes outbox rows some other way. However many calls come while a
    wake-up is on its way, one more follows it."""
    _doorbell(engine, table).ring()


_doorbells: "weakref.WeakKeyDictionary[AsyncEngine, dict[str, _Ringer]]" = (
    weakref.WeakKeyDictionary()
)


def _doorbell(engine: AsyncEngine, table: str) -> "_Ringer":
    by_table = _doorbells.setdefault(engine, {})
    if table not in by_table:
        by_table[table] = _Ringer(engine, table)
    return by_table[table]


async def wake_relay(engine: AsyncEngine, table: str = "outbox_messages") -> None:
    """Interrupt the wait of the relay of this schema's outbox, if one is waiting."""
    async with engine.connect() as connection:
        try:
            await connection.execute(
                text(f"KILL QUERY IS_USED_LOCK({LOCK_NAME})"), {"table": table}
            )
        except DBAPIError as exc:
            if _error_code(exc) != ER_NO_SUCH_THREAD:
                raise


# The shortest time between two wake-ups from one process. Commits that come faster find the
# relay awake (it looks for rows once more before it sleeps again); a wake-up for each of them
# would cost the database a statement per commit for nothing.
WAKE_INTERVAL_SECONDS = 0.005


class _Ringer:
    """Wakes one outbox's relay after commits: one wake-up at a time per process, and one
    more after it (at least WAKE_INTERVAL_SECONDS later) for the commits that came meanwhile,
    however many there were."""

    def __init__(self, engine: AsyncEngine, table: str) -> None:
        self.engine = weakref.ref(engine)  # the ringer must not keep a disposed engine alive
        self.table = table
        self.again = False
        self.task: asyncio.Task[None] | None = None

    def ring(self) -> None:
        self.again = True
        if self.task is None or self.task.done():
            # In a context of its own: the task outlives the request that started it and
            # rings for later commits too, so it belongs to no request's trace or log lines.
            self.task = asyncio.get_running_loop().create_task(
                self._ring(), context=contextvars.Context()
            )

    async def _ring(self) -> None:
        while self.again and (engine := self.engine()) is not None:
            self.again = False
            began = asyncio.get_running_loop().time()
            try:
                await wake_relay(engine, self.table)
            except (DBAPIError, PoolTimeout, OSError) as exc:
                # The relay's own timeout publishes the event a little later. A pool with no
                # free connection (a busy process) is no reason to fail the task: its error
                # went unretrieved and was logged as one.
                log.debug("outbox_wake_failed", error_type=type(exc).__name__)
            del engine
            if self.again:
                elapsed = asyncio.get_running_loop().time() - began
                await asyncio.sleep(max(0.0, WAKE_INTERVAL_SECONDS - elapsed))


def _error_code(exc: DBAPIError) -> int | None:
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    return code if isinstance(code, int) else None


class _Waiting:
    """The relay's side of the doorbell: a connection of its own, outside any transaction,
    that holds the outbox's named lock and waits in the database."""

    def __init__(self, connection: AsyncConnection, table: str) -> None:
        self.connection = connection
        self.table = table
        self.holds_lock = False
        # One statement, so no commit falls between the look and the sleep: an event
        # committed before it started is seen (the answer is 2), one committed after
        # interrupts the sleep. The table name is the outbox model's, never input.
        self.statement = text(
            f"SELECT IF(EXISTS(SELECT 1 FROM `{table}`), 2, SLEEP(:seconds))"  # noqa: S608 - see above
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, engine: AsyncEngine, table: str) -> AsyncIterator["_Waiting"]:
        async with engine.connect() as connection:
            try:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                yield cls(connection, table)
            finally:
                # Closed rather than pooled: a pooled connection would keep the named lock,
                # and a later relay could never be woken.
                await connection.invalidate()

    async def wait(self, stop: asyncio.Event, seconds: float) -> bool:
        """Return when a commit rings, after `seconds`, or on stop; at once, and True, when
        rows are waiting already."""
        if not self.holds_lock:
            # Another relay of the service holds it: that one is woken, this one looks now
            # and then, and takes the lock over when the other's connection closes.
            acquired = await self.connection.scalar(
                text(f"SELECT GET_LOCK({LOCK_NAME}, 0)"), {"table": self.table}
            )
            self.holds_lock = acquired == 1
        if not self.holds_lock:
            await sleep_unless(stop, seconds)
            return False
        sleeping = asyncio.ensure_future(
            self.connection.scalar(self.statement, {"seconds": seconds})
        )
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not sleeping.done():
            engine = self.connection.engine
            await wake_relay(engine, self.table)  # the lock is ours: this ends our own sleep
        try:
            return bool(await sleeping == 2)
        except DBAPIError as exc:
            if _error_code(exc) != ER_QUERY_INTERRUPTED:
                raise
            return False


# --- publishing -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=65_536)
def _partition(key: bytes, partitions: int) -> int:
    """The partition of a key, as Kafka's default partitioner picks it (murmur2)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


# id, topic, message_key, payload
_Rows = Sequence[Row[int, str, str, str]]


class OutboxRelay:
    """Publishes outbox rows in id order and deletes them once the broker has them.

    A batch is read FOR UPDATE, so a second relay of the same service waits on the row locks
    rather than publishing the same rows again; rows are deleted only after every send is
    acknowledged.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        model: type[OutboxMessageMixin],
        bootstrap_servers: str,
        batch_size: int = 1000,
        idle_seconds: float = 1.0,
    ) -> None:
        engine = sessionmaker.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("the relay needs sessions bound to the service's engine")
        self.engine = engine
        self.model = model
        self.bootstrap_servers = bootstrap_servers
        self.batch_size = batch_size
        # The longest an idle relay waits before looking at the outbox again; a commit in
        # any process wakes it sooner.
        self.idle_seconds = idle_seconds
        self._known_topics: set[str] = set()
        # Columns rather than ORM objects: loading tracked objects cost more than sending.
        self._oldest = (
            select(model.id, model.topic, model.message_key, model.payload)
            .order_by(model.id)
            .limit(batch_size)
            .with_for_update()
        )
        # The outbox's label in the metrics: its schema, the service's.
        self.schema = engine.url.database or _table_name(model)
        self._backlog = select(func.count(), func.min(model.created_at))

    async def publish_batch(self, producer: AIOKafkaProducer) -> int:
        """Publish up to one batch, the oldest rows; the number of events published."""
        async with self.engine.connect() as connection:
            return await self._publish_batch(producer, connection)

    async def publish_pending(self, producer: AIOKafkaProducer) -> int:
        """Publish until a batch comes back short of full; the number of events published."""
        async with self.engine.connect() as connection:
            return await self._publish_pending(producer, connection)

    async def _publish_batch(self, producer: AIOKafkaProducer, connection: AsyncConnection) -> int:
        model = self.model
        async with connection.begin():
            rows = (await connection.execute(self._oldest)).all()
            if not rows:
                return 0
            with publishing(rows):
                await self._send(producer, rows)
            await connection.execute(delete(model).where(model.id.in_([row.id for row in rows])))
        OUTBOX_PUBLISHED.labels(self.schema).inc(len(rows))
        log.debug("outbox_published", count=len(rows))
        return len(rows)

    async def _publish_pending(
        self, producer: AIOKafkaProducer, connection: AsyncConnection
    ) -> int:
        # Rows committed during the last, short, batch are seen by the doorbell's look, which
        # then returns at once, rather than by one more, empty, locking read.
        published = 0
        while True:
            count = await self._publish_batch(producer, connection)
            published += count
            await self._count_backlog(connection)
            if count < self.batch_size:
                return published

    async def _count_backlog(self, connection: AsyncConnection) -> None:
        """Count the rows waiting and find the oldest, for the metrics (common.metrics), at
        most once per OUTBOX.interval_seconds: a consistent read that waits on no lock."""
        if not OUTBOX.due(self.schema):
            return
        async with connection.begin():
            backlog, oldest = (await connection.execute(self._backlog)).one()
        OUTBOX.set(self.schema, int(backlog), oldest)

    async def _count_backlog_now(self) -> None:
        """The backlog while the broker is away, when the database answers."""
        try:
            async with self.engine.connect() as connection:
                await self._count_backlog(connection)
        except (DBAPIError, OSError) as exc:
            log.debug("outbox_backlog_not_counted", error_type=type(exc).__name__)

    async def _send(self, producer: AIOKafkaProducer, rows: _Rows) -> None:
        """Hand the rows to the producer in one closed batch per partition (in id order
        within each) and wait for every acknowledgement.

        A closed batch leaves at once rather than lingering for more messages, and costs one
        delivery future instead of one per message."""
        topics = {row.topic for row in rows}
        await self._ensure_topics(topics)
        headers = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
        partitions = {topic: len(await producer.partitions_for(topic)) for topic in topics}
        batches: dict[tuple[str, int], Any] = {}
        deliveries = []
        for row in rows:
            key = row.message_key.encode()
            where = (row.topic, _partition(key, partitions[row.topic]))
            batch = batches.get(where)
            if batch is None:
                batch = batches[where] = producer.create_batch()
            value = row.payload.encode()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                # Full: send it, and start the partition's next batch with this row.
                batch.close()
                deliveries.append(await producer.send_batch(batch, where[0], partition=where[1]))
                batch = batches[where] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        for (topic, partition), batch in batches.items():
            batch.close()
            deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*deliveries)

    async def _ensure_topics(self, topics: set[str]) -> None:
        missing = topics - self._known_topics
        if missing:
            await ensure_topics(self.bootstrap_servers, sorted(missing))
            self._known_topics |= missing

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until stop is set, waiting on the doorbell while the outbox is empty;
        broker or database outages wait and resume."""
        delay = 0.5
        while not stop.is_set():
            producer = create_producer(self.bootstrap_servers)
            try:
                await producer.start()
                async with _Waiting.open(self.engine, _table_name(self.model)) as waiting:
                    while not stop.is_set():
                        # One connection for as long as rows keep coming (no pool checkout
                        # per batch); back to the pool, and its checks, once the relay sleeps.
                        async with self.engine.connect() as publishing:
                            busy = True
                            while busy and not stop.is_set():
                                await self._publish_pending(producer, publishing)
                                delay = 0.5
                                busy = await waiting.wait(stop, self.idle_seconds)
            except Exception as exc:
                # A database error SQLAlchemy did not wrap (database_unavailable knows them)
                # is an outage too: waited out, never the end of the worker.
                if not (
                    isinstance(exc, (KafkaError, OSError, DBAPIError)) or database_unavailable(exc)
                ):
                    raise
                # The dev broker forgets topics when it restarts: check them again next time.
                self._known_topics.clear()
                log.warning("outbox_relay_waiting", error_type=type(exc).__name__, retry_in=delay)
                await self._count_backlog_now()
                await sleep_unless(stop, delay)
                delay = min(delay * 2, 10)
            finally:
                await stop_client(producer)
