"""The drill's listing of dead letters (scripts/drill.py `dead_letters`), against the real
broker: a record dead-lettered by the inbox consumer itself comes back with its topic, the
original record's topic, partition and offset, its event type and id, and the reason."""

import functools
import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import async_sessionmaker

from common.events import CloudEvent
from common.inbox import EventConsumer, InboxMessageMixin
from common.kafka import ensure_topics

REPOSITORY = Path(__file__).resolve().parents[2]


@functools.cache
def drill_script() -> ModuleType:
    """scripts/drill.py as a module (scripts/ is not a package), loaded once."""
    spec = importlib.util.spec_from_file_location("drill", REPOSITORY / "scripts" / "drill.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["drill"] = module  # where its dataclasses look themselves up
    spec.loader.exec_module(module)
    return module


async def test_each_dead_letter_is_listed_with_where_it_came_from_and_why(
    kafka_bootstrap: str,
) -> None:
    drill = drill_script()
    group = f"drill-dlt-{uuid.uuid4().hex[:8]}"
    topic = f"{group}.events"
    consumer = EventConsumer(
        name=group,
        topics=[topic],
        handlers={},
        sessionmaker=async_sessionmaker(),
        inbox_model=InboxMessageMixin,
        bootstrap_servers=kafka_bootstrap,
    )
    await ensure_topics(kafka_bootstrap, [topic, consumer.dead_letter_topic])
    events = [
        CloudEvent(source="/drill", type="payment.failed", subject=str(uuid.uuid4()), data={})
        for _ in range(2)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    reader = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, event.model_dump_json().encode(), key=b"k")
        await producer.send_and_wait(topic, b"not an envelope", key=b"k")
        records: list[Any] = []
        while len(records) < 3:
            for batch in (await reader.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        # As the consumer does when a handler gives up, or the envelope cannot be read.
        await consumer._dead_letter(records[0], producer, "ValidationError")
        await consumer._dead_letter(records[1], producer, "IntegrityError")
        await consumer._dead_letter(records[2], producer, "undecodable envelope")
    finally:
        await reader.stop()
        await producer.stop()

    letters = await drill.dead_letters(kafka_bootstrap, [consumer.dead_letter_topic])

    originals = {f"{r.topic}/{r.partition}/{r.offset}": r for r in records}
    assert sorted(letter.original for letter in letters) == sorted(originals)
    by_reason = {letter.reason: letter for letter in letters}
    assert set(by_reason) == {"ValidationError", "IntegrityError", "undecodable envelope"}
    first = by_reason["ValidationError"]
    assert first.topic == consumer.dead_letter_topic
    assert (first.event_type, first.event_id) == ("payment.failed", events[0].id)
    assert first.original == f"{topic}/{records[0].partition}/{records[0].offset}"
    assert by_reason["IntegrityError"].event_id == events[1].id
    assert by_reason["undecodable envelope"].event_type == "(undecodable)"
    assert f"payment.failed {events[0].id} from {topic}/" in str(first)


def test_the_reconciliation_counts_each_dead_letter_as_lost_with_its_reason() -> None:
    drill = drill_script()
    letter = drill.DeadLetter(
        "email-service.dlt", 0, 4, "payment.events/1/17", "payment.failed", "e-1", "ValueError"
    )
    check = drill.dead_letter_check([letter])
    assert (check.checked, check.lost, check.doubled) == (1, 1, 0)
    assert check.notes == [
        "lost: dead letter email-service.dlt[0]@4: payment.failed e-1"
        " from payment.events/1/17, ValueError"
    ]
    assert drill.dead_letter_check([]).lost == 0
