"""Kafka client plumbing that the services' loops stand on."""

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from common.kafka import stop_client
from common.testing.servers import free_port, start_tansu, tansu_binary

pytestmark = pytest.mark.skipif(tansu_binary() is None, reason="needs the dev broker to kill")


def metadata_tasks() -> set[asyncio.Task[object]]:
    """The running tasks in which aiokafka clients refresh their metadata, one per client."""
    return {
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and getattr(task.get_coro(), "__qualname__", "") == "AIOKafkaClient._md_synchronizer"
    }


async def test_a_consumer_stopped_while_its_fetch_waits_to_retry_does_not_cancel_its_caller(
    tmp_path: Path,
) -> None:
    """The drill's sync worker exited when its broker connection failed: aiokafka's
    `consumer.stop()` raised CancelledError out of a fetch that was waiting to retry, and
    the worker's loop, meant to wait and reconnect, ended with the process."""
    port = free_port()
    broker = start_tansu(port, tmp_path / "broker.log")
    try:
        producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
        await producer.start()
        await producer.send_and_wait("stop.client", b"one", partition=0)
        await producer.stop()
        # Other tests' clients may share this event loop: only tasks started here count.
        before = metadata_tasks()
        # A long retry pause, so the fetch is surely waiting in it when the consumer stops.
        consumer = AIOKafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}", retry_backoff_ms=5000)
        await consumer.start()
        partition = TopicPartition("stop.client", 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        reading = asyncio.create_task(consumer.getmany(timeout_ms=20_000))
        await asyncio.sleep(0.5)

        broker.kill()
        broker.wait(10)
        await asyncio.sleep(1.5)  # the fetch fails and starts its retry pause
        await stop_client(consumer)

        assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
        # ... and the consumer is closed through: no metadata task of its left behind.
        assert metadata_tasks() - before == set()
        reading.cancel()
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait(10)
