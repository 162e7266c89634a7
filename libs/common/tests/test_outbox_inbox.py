"""The outbox relay and the inbox consumer on a real schema and a real broker: events leave
only after their transaction commits, survive a broker outage, and are handled once; an idle
relay is woken by a commit, shares the outbox with a second relay, and a consumer handles a
fetch in one transaction."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import delete, func, select, text
from sqlalchemy.event import listen, remove
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from common.db import create_engine, create_sessionmaker
from common.events import CloudEvent, new_event
from common.inbox import EventConsumer
from common.kafka import create_producer, ensure_topics
from common.outbox import LOCK_NAME, OutboxRelay, _Ringer, add_event
from common.testing.plugin import next_event
from common.testing.servers import MysqlServer, free_port, start_tansu

from .notes import InboxMessage, Note, NoteWritten, OutboxMessage, notes_schema


@pytest.fixture(scope="module")
async def sessionmaker(
    mysql_server: MysqlServer,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with notes_schema(mysql_server, "common_test") as sessions:
        yield sessions


def topic_name() -> str:
    return f"test.{uuid.uuid4().hex[:8]}"


def note_event(text: str) -> CloudEvent:
    return new_event("/tests", "note.written", uuid.uuid4(), NoteWritten(text=text))


async def start_consumer(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    await ensure_topics(bootstrap, [topic])
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=topic_name()
    )
    await consumer.start()
    return consumer


async def outbox_size(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0


async def test_a_committed_event_is_published_and_leaves_the_outbox(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    topic = topic_name()
    event = note_event("committed")
    async with sessionmaker() as session, session.begin():
        add_event(session, OutboxMessage, topic, event)
    consumer = await start_consumer(kafka_bootstrap, topic)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        published = await OutboxRelay(sessionmaker, OutboxMessage, kafka_bootstrap).publish_batch(
            producer
        )
        received = await next_event(consumer, lambda e: e.id == event.id)
    finally:
        await producer.stop()
        await consumer.stop()

    assert published == 1
    assert received == event
    assert await outbox_size(sessionmaker) == 0


async def test_a_rolled_back_event_is_never_staged(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    before = await outbox_size(sessionmaker)

    async def stage_then_fail() -> None:
        async with sessionmaker() as session, session.begin():
            add_event(session, OutboxMessage, topic_name(), note_event("rolled back"))
            raise RuntimeError("the request failed after staging its event")

    with pytest.raises(RuntimeError):
        await stage_then_fail()

    assert await outbox_size(sessionmaker) == before


async def test_events_wait_out_a_broker_outage_and_are_published_after_it(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    topic = topic_name()
    event = note_event("outage")
    relay = OutboxRelay(sessionmaker, OutboxMessage, bootstrap, idle_seconds=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    broker = None
    try:
        async with sessionmaker() as session, session.begin():
            add_event(session, OutboxMessage, topic, event)
        await asyncio.sleep(2)
        assert await outbox_size(sessionmaker) == 1, "nothing may leave while the broker is down"

        broker = start_tansu(port)
        consumer = await start_consumer(bootstrap, topic)
        try:
            received = await next_event(consumer, lambda e: e.id == event.id, within_seconds=40)
        finally:
            await consumer.stop()
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)
        if broker is not None:
            broker.terminate()
            broker.wait(10)

    assert received == event
    assert await outbox_size(sessionmaker) == 0


async def test_a_redelivered_event_is_handled_once_and_a_poison_one_is_dead_lettered(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    topic = topic_name()
    group = f"notes-{uuid.uuid4().hex[:6]}"
    good, poison, after = note_event("good"), note_event("poison"), note_event("after")

    async def write_note(session: AsyncSession, event: CloudEvent) -> None:
        text = NoteWritten.model_validate(event.data).text
        if text == "poison":
            raise ValueError("this handler cannot take that event")
        session.add(Note(text=f"{group}:{text}"))

    consumer = EventConsumer(
        name=group,
        topics=[topic],
        handlers={"note.written": write_note},
        sessionmaker=sessionmaker,
        inbox_model=InboxMessage,
        bootstrap_servers=kafka_bootstrap,
        max_attempts=2,
        retry_base_seconds=0.05,
    )
    await ensure_topics(kafka_bootstrap, [topic, consumer.dead_letter_topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in (good, good, poison, after):  # the broker delivers `good` twice
            await producer.send_and_wait(
                topic, event.model_dump_json().encode(), key=event.subject.encode()
            )
    finally:
        await producer.stop()
    dead_letters = await start_consumer(kafka_bootstrap, consumer.dead_letter_topic)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        dead = await next_event(dead_letters, lambda e: e.id == poison.id)
        notes = await _wait_for_notes(sessionmaker, group, 2)
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)
        await dead_letters.stop()

    assert dead == poison
    assert sorted(notes) == [f"{group}:after", f"{group}:good"]


async def test_an_event_whose_data_does_not_fit_is_dead_lettered_without_retries(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    """A ValidationError will be the same next time: retrying it only holds back the events
    behind it (a whole backoff schedule per bad event)."""
    topic = topic_name()
    group = f"notes-{uuid.uuid4().hex[:6]}"
    unfit = new_event("/tests", "note.written", uuid.uuid4(), NoteWritten(text="x"))
    unfit = unfit.model_copy(update={"data": {"text": ["not", "text"]}})
    after = note_event("after")
    calls: list[str] = []

    async def write_note(session: AsyncSession, event: CloudEvent) -> None:
        calls.append(event.id)
        text = NoteWritten.model_validate(event.data).text
        session.add(Note(text=f"{group}:{text}"))

    consumer = EventConsumer(
        name=group,
        topics=[topic],
        handlers={"note.written": write_note},
        sessionmaker=sessionmaker,
        inbox_model=InboxMessage,
        bootstrap_servers=kafka_bootstrap,
        max_attempts=5,
        retry_base_seconds=0.05,
    )
    await ensure_topics(kafka_bootstrap, [topic, consumer.dead_letter_topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in (unfit, after):
            await producer.send_and_wait(
                topic, event.model_dump_json().encode(), key=event.subject.encode()
            )
    finally:
        await producer.stop()
    dead_letters = await start_consumer(kafka_bootstrap, consumer.dead_letter_topic)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        dead = await next_event(dead_letters, lambda e: e.id == unfit.id)
        notes = await _wait_for_notes(sessionmaker, group, 1)
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)
        await dead_letters.stop()

    assert dead.id == unfit.id
    # Once with the rest of its fetch, once alone; with retries it would be 1 + 5.
    assert calls.count(unfit.id) <= 2
    assert notes == [f"{group}:after"]


async def _wait_for_notes(
    sessionmaker: async_sessionmaker[AsyncSession], group: str, count: int
) -> list[str]:
    for _ in range(100):
        async with sessionmaker() as session:
            notes = list(
                await session.scalars(
                    select(Note.text).where(Note.text.startswith(group)).order_by(Note.id)
                )
            )
        if len(notes) >= count:
            await asyncio.sleep(0.5)  # a duplicate, if handled twice, would show up by now
            async with sessionmaker() as session:
                return list(
                    await session.scalars(
                        select(Note.text).where(Note.text.startswith(group)).order_by(Note.id)
                    )
                )
        await asyncio.sleep(0.1)
    raise AssertionError(f"{group}: expected {count} notes")


# --- the relay's wake-up and a second relay ----------------------------------------------------


def owner_event(owner: uuid.UUID, text_: str) -> CloudEvent:
    return new_event("/tests", "note.written", owner, NoteWritten(text=text_))


def url_of(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    engine: AsyncEngine = sessionmaker.kw["bind"]
    return engine.url.render_as_string(hide_password=False)


async def clear_outbox(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Leftovers of an earlier test would come first in the relay's batches."""
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(OutboxMessage))


async def doorbell_holder(sessionmaker: async_sessionmaker[AsyncSession]) -> int | None:
    async with sessionmaker() as session:
        holder = await session.scalar(
            text(f"SELECT IS_USED_LOCK({LOCK_NAME})"), {"table": OutboxMessage.__tablename__}
        )
    return None if holder is None else int(holder)


async def until_relay_waits(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Until a relay holds the doorbell's lock: it has published what there was and waits."""
    for _ in range(400):
        if await doorbell_holder(sessionmaker) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no relay ever waited on the doorbell")


async def read_all(consumer: AIOKafkaConsumer, ids: set[str]) -> list[CloudEvent]:
    """Every event on the topic until all of `ids` came, and whatever else follows them."""
    received: list[CloudEvent] = []
    seen: set[str] = set()
    async with asyncio.timeout(60):
        while not ids <= seen:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    event = CloudEvent.model_validate_json(record.value)
                    received.append(event)
                    seen.add(event.id)
    # Anything sent after the last expected event (a duplicate) is on the topic by now.
    for records in (await consumer.getmany(timeout_ms=2000)).values():
        received += [CloudEvent.model_validate_json(r.value) for r in records]
    return received


async def test_a_commit_elsewhere_wakes_an_idle_relay_at_once(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    topic = topic_name()
    event = note_event("woken")
    # Were it not woken, this relay would look at the outbox again in ten minutes.
    relay = OutboxRelay(sessionmaker, OutboxMessage, kafka_bootstrap, idle_seconds=600)
    consumer = await start_consumer(kafka_bootstrap, topic)
    elsewhere = create_engine(url_of(sessionmaker), pool_size=1)  # as another process would
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await until_relay_waits(sessionmaker)
        async with create_sessionmaker(elsewhere)() as session, session.begin():
            add_event(session, OutboxMessage, topic, event)
        received = await next_event(consumer, lambda e: e.id == event.id)
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)  # a stop ends the ten minutes' wait too
        await consumer.stop()
        await elsewhere.dispose()

    assert received == event
    assert await outbox_size(sessionmaker) == 0


async def test_two_relays_publish_each_event_once_in_order(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    await clear_outbox(sessionmaker)
    topic = topic_name()
    owners = [uuid.uuid4() for _ in range(6)]
    events = [owner_event(owners[n % len(owners)], f"{n}") for n in range(300)]
    consumer = await start_consumer(kafka_bootstrap, topic)
    # Two workers of one service: each its own connections.
    engines = [create_engine(url_of(sessionmaker), pool_size=2) for _ in range(2)]
    relays = [
        OutboxRelay(
            create_sessionmaker(engine),
            OutboxMessage,
            kafka_bootstrap,
            batch_size=20,
            idle_seconds=0.05,
        )
        for engine in engines
    ]
    stop = asyncio.Event()
    running = [asyncio.create_task(relay.run(stop)) for relay in relays]
    try:
        for start in range(0, len(events), 25):  # staged while both relays run
            async with sessionmaker() as session, session.begin():
                for event in events[start : start + 25]:
                    add_event(session, OutboxMessage, topic, event)
        received = await read_all(consumer, {e.id for e in events})
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*running), 30)
        await consumer.stop()
        for engine in engines:
            await engine.dispose()

    assert sorted(e.id for e in received) == sorted(e.id for e in events)
    for owner in owners:
        assert [e.id for e in received if e.subject == str(owner)] == [
            e.id for e in events if e.subject == str(owner)
        ]
    assert await outbox_size(sessionmaker) == 0


# --- the inbox: one transaction per fetch ------------------------------------------------------


async def test_the_events_of_one_fetch_share_one_transaction_and_keep_their_order(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    topic = topic_name()
    group = f"notes-{uuid.uuid4().hex[:6]}"
    owner = uuid.uuid4()
    events = [owner_event(owner, f"{n:02d}") for n in range(20)]

    async def write_note(session: AsyncSession, event: CloudEvent) -> None:
        session.add(Note(text=f"{group}:{NoteWritten.model_validate(event.data).text}"))

    consumer = EventConsumer(
        name=group,
        topics=[topic],
        handlers={"note.written": write_note},
        sessionmaker=sessionmaker,
        inbox_model=InboxMessage,
        bootstrap_servers=kafka_bootstrap,
    )
    await ensure_topics(kafka_bootstrap, [topic, consumer.dead_letter_topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in [*events, events[3]]:  # on the topic before the consumer starts: one fetch
            await producer.send_and_wait(
                topic, event.model_dump_json().encode(), key=event.subject.encode()
            )
    finally:
        await producer.stop()
    commits = 0

    def count_commit(_connection: Any) -> None:
        nonlocal commits
        commits += 1

    engine: AsyncEngine = sessionmaker.kw["bind"]
    listen(engine.sync_engine, "commit", count_commit)
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        notes = await _wait_for_notes(sessionmaker, group, len(events))
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)
        remove(engine.sync_engine, "commit", count_commit)

    assert notes == [f"{group}:{n:02d}" for n in range(20)]  # once each, in order
    assert 1 <= commits < len(events)


async def test_a_group_committed_past_the_end_of_its_partitions_reads_them_again(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str
) -> None:
    """A broker that lost its partitions' tail (the dev broker's S3 engine after a SIGKILL)
    gives new events offsets the group has already committed past. Waiting there would skip
    them; the consumer reads such a partition again from the start, and the inbox skips what
    it handled before."""
    topic = topic_name()
    group = f"notes-{uuid.uuid4().hex[:6]}"
    await ensure_topics(kafka_bootstrap, [topic])
    # The group's offsets, as the broker kept them before it lost the partitions' tail.
    committer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        await committer.topics()
        partitions = [TopicPartition(topic, p) for p in committer.partitions_for_topic(topic) or []]
        committer.assign(partitions)
        await committer.commit(dict.fromkeys(partitions, 500))
    finally:
        await committer.stop()
    events = [note_event(f"after the loss {n}") for n in range(6)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic, event.model_dump_json().encode(), key=event.id.encode()
            )
    finally:
        await producer.stop()

    async def write_note(session: AsyncSession, event: CloudEvent) -> None:
        session.add(Note(text=f"{group}:{NoteWritten.model_validate(event.data).text}"))

    consumer = EventConsumer(
        name=group,
        topics=[topic],
        handlers={"note.written": write_note},
        sessionmaker=sessionmaker,
        inbox_model=InboxMessage,
        bootstrap_servers=kafka_bootstrap,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        notes = await _wait_for_notes(sessionmaker, group, len(events))
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)

    assert sorted(notes) == sorted(f"{group}:after the loss {n}" for n in range(6))


async def test_a_wake_up_that_finds_no_free_connection_gives_up_quietly(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Under load a process's pool can be out of connections; the wake-up is best effort (the
    relay looks again within a second), so it must not end in an unretrieved error."""
    engine = create_async_engine(
        url_of(sessionmaker), pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    try:
        async with engine.connect():  # the pool's only connection, held
            ringer = _Ringer(engine, OutboxMessage.__tablename__)
            ringer.ring()
            assert ringer.task is not None
            await asyncio.wait_for(asyncio.shield(ringer.task), 10)
    finally:
        await engine.dispose()

    assert ringer.task.exception() is None
