"""Kafka clients with the settings every service uses, and topic creation."""

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from common.logging import get_logger

DEFAULT_PARTITIONS = 3
# How long the broker may hold a fetch that finds nothing new. Apache Kafka answers as soon as
# a record arrives, whatever this is. The dev broker (tansu) answers at once only when records
# are there as the fetch arrives; otherwise it sleeps through the wait (looking again halfway
# when the wait is 250 ms or more), so a record waits up to this long for its consumer. Short,
# then: each idle consumer pays one empty fetch per wait instead (docs/benchmarks.md).
DEFAULT_FETCH_MAX_WAIT_MS = 20
log = get_logger(__name__)


def create_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica.

    Idempotence stays off: the development broker does not implement InitProducerId, and
    the consumers' inbox makes a duplicate publish harmless anyway.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=15_000,
    )


def create_consumer(
    bootstrap_servers: str,
    topics: list[str],
    group_id: str,
    fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
    listener: ConsumerRebalanceListener | None = None,
) -> AIOKafkaConsumer:
    """A consumer of a group that commits its offsets itself, after its own transaction;
    `listener` hears which partitions the group gives it and takes away."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    if topics:  # aiokafka refuses an empty subscription; such a consumer is assigned by hand
        consumer.subscribe(topics, listener=listener)
    return consumer


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Stop a consumer or producer, also one whose broker connection has just failed.

    aiokafka (0.14) stops a consumer by cancelling its pending fetch requests and awaiting
    them, so `stop()` itself raises CancelledError when a fetch was waiting out its retry
    after a connection error, and ends there, before closing its connections and its
    metadata task. Nothing cancelled the caller, yet the error would end the worker's loops
    and the process with them on a broker outage (the drill's sync worker exited so). It is
    swallowed here and the close finished; a cancellation of the caller's own task passes.
    """
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.info("kafka_client_stopped_mid_retry", client=type(client).__name__)
        # The connections stop() did not reach; left open, every outage would leave one
        # more client refreshing metadata forever.
        connections = client._client if isinstance(client, AIOKafkaConsumer) else client.client
        await connections.close()


async def rewind_partitions_past_their_end(consumer: AIOKafkaConsumer, name: str) -> int:
    """Read again from the start every assigned partition whose position is past its high
    watermark; how many were rewound.

    The broker lost the partition's tail while the group's committed offset stayed (the dev
    broker's S3 engine, killed, came back with its offsets lower than before and gave the
    new records offsets the group had already committed past; on Apache Kafka an unclean
    leader election does the same). Waiting at the old offset would skip every new record up
    to it: an event lost. Apache Kafka answers such a fetch OFFSET_OUT_OF_RANGE and the
    consumer starts over as `auto_offset_reset` says; the dev broker does not, so the
    consumer looks itself, after an empty fetch (which carries the watermark). Reading from
    the start again is safe: the inbox skips what was handled.
    """
    rewound = 0
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        position = await consumer.position(tp)
        if position > highwater:
            log.warning(
                "partition_rewound",
                consumer=name,
                topic=tp.topic,
                partition=tp.partition,
                position=position,
                highwater=highwater,
            )
            await consumer.seek_to_beginning(tp)
            rewound += 1
    return rewound


async def ensure_topics(
    bootstrap_servers: str, topics: list[str], partitions: int = DEFAULT_PARTITIONS
) -> None:
    """Create the topics that are missing; a broker that forgot them gets them back."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return
        # Another process may create the same topic between the listing and here.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in missing]
            )
        log.info("topics_created", topics=missing)
    finally:
        await admin.close()


async def broker_answers(bootstrap_servers: str, timeout_seconds: float = 3) -> bool:
    """True when the broker returns cluster metadata within the timeout."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_seconds * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=timeout_seconds)
        await asyncio.wait_for(admin.list_topics(), timeout=timeout_seconds)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()
