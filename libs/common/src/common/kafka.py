"""Kafka clients with the settings every service uses, and topic creation."""

import asyncio
import contextlib

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from common.logging import get_logger

DEFAULT_PARTITIONS = 3
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
