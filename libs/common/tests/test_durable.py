"""The drill's own servers keep what they hold across a SIGKILL and a restart."""

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from common.testing.durable import DiskS3, DurableBroker, PrivateMariadb
from common.testing.fault_proxy import FaultProxy
from common.testing.servers import free_port


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[PrivateMariadb]:
    server = PrivateMariadb(tmp_path / "db")
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_a_private_mariadb_keeps_a_committed_row_across_sigkill(mariadb: PrivateMariadb) -> None:
    url = mariadb.provision("drill_svc", "drill-password")
    assert url.endswith(f"@127.0.0.1:{mariadb.port}/drill_svc")
    mariadb.sql("CREATE TABLE drill_svc.t (n INT); INSERT INTO drill_svc.t VALUES (7);")

    mariadb.restart(hard=True)
    mariadb.wait_ready()

    assert mariadb.sql("SELECT n FROM drill_svc.t").split() == ["7"]
    assert mariadb.starts == 2


async def test_the_durable_broker_keeps_messages_and_offsets_across_sigkill(
    tmp_path: Path,
) -> None:
    s3 = DiskS3(tmp_path / "s3", ["tansu"])
    s3.start()
    # Clients reach the broker through a proxy, as in the drill: the broker advertises it.
    broker = DurableBroker(tmp_path, s3, "tansu", advertised_port=free_port())
    proxy = await FaultProxy("127.0.0.1", broker.port, port=broker.advertised_port).start()
    try:
        await asyncio.to_thread(broker.start)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=False)
        await producer.start()
        for n in range(20):
            await producer.send_and_wait("drill.test", f"m{n}".encode(), key=b"k")
        await producer.stop()
        consumer = AIOKafkaConsumer(
            "drill.test",
            bootstrap_servers=broker.bootstrap,
            group_id="drill-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        seen = []
        async with asyncio.timeout(30):
            while len(seen) < 10:
                record = await consumer.getone()
                seen.append(record.value)
        partition = TopicPartition("drill.test", record.partition)
        await consumer.commit({partition: record.offset + 1})
        await consumer.stop()

        broker.kill()
        await proxy.reset_all()
        await asyncio.to_thread(broker.start)

        consumer = AIOKafkaConsumer(
            "drill.test",
            bootstrap_servers=broker.bootstrap,
            group_id="drill-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        rest = []
        async with asyncio.timeout(60):
            while len(rest) < 10:
                rest.append((await consumer.getone()).value)
        await consumer.stop()
        assert seen + rest == [f"m{n}".encode() for n in range(20)]
    finally:
        broker.stop()
        await proxy.stop()
        s3.stop()


async def test_every_record_acknowledged_to_concurrent_producers_survives_a_restart(
    tmp_path: Path,
) -> None:
    """Finding 6 of docs/reliability.md: over a store that ignored conditional writes, two
    producers writing to one partition at once took the same offset and the second batch
    overwrote the first. Four producers now write to one partition while the broker is
    stopped and started under them; each record acknowledged must be read back. (A record
    may be read twice: a producer whose connection closed before the answer sends it again,
    as it would to Apache Kafka without idempotence; the inbox handles an event once.)"""
    s3 = DiskS3(tmp_path / "s3", ["tansu"])
    s3.start()
    broker = DurableBroker(tmp_path, s3, "tansu")
    topic = "drill.concurrent"
    acknowledged: list[bytes] = []
    # One-record batches, a bounded number (the broker's S3 engine reads each back as one
    # object: thousands would take minutes): the broker is stopped once 250 are acknowledged
    # (it may take a while to go), producers write on up to 500 meanwhile, and each goes on
    # until it has had 100 more acknowledged after the broker is back.
    before, after = 250, 100
    enough_before = asyncio.Event()
    restarted = asyncio.Event()
    try:
        await asyncio.to_thread(broker.start)

        async def produce(producer_number: int) -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=broker.bootstrap,
                enable_idempotence=False,
                request_timeout_ms=5000,
                retry_backoff_ms=200,
            )
            await producer.start()
            try:
                n = since_restart = 0
                while since_restart < after:
                    if len(acknowledged) >= 2 * before and not restarted.is_set():
                        await restarted.wait()  # enough written while the broker goes down
                    n += 1
                    value = f"{producer_number}-{n}".encode()
                    try:
                        await producer.send_and_wait(topic, value, partition=0)
                    except Exception:  # the broker is away: a record in doubt, not acknowledged
                        await asyncio.sleep(0.2)
                        continue
                    acknowledged.append(value)
                    if len(acknowledged) >= before:
                        enough_before.set()
                    if restarted.is_set():
                        since_restart += 1
            finally:
                await producer.stop()

        async with asyncio.timeout(180):
            producers = [asyncio.create_task(produce(p)) for p in range(4)]
            await enough_before.wait()
            await asyncio.to_thread(broker.restart)
            restarted.set()
            await asyncio.gather(*producers)

        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        await consumer.start()
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        read: set[bytes] = set()
        # Until every acknowledged record is read, or a minute shows some never will be. (The
        # high watermark is no end mark here: a batch the broker numbered but never wrote,
        # as it was stopped, leaves a gap nothing is read from.)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                while not set(acknowledged) <= read:
                    batch = await consumer.getmany(partition, timeout_ms=500)
                    read.update(record.value for record in batch.get(partition, []))
        where = f"read to {await consumer.position(partition)} of {consumer.highwater(partition)}"
        await consumer.stop()

        assert len(acknowledged) >= before + 4 * after
        lost = set(acknowledged) - read
        assert lost == set(), (
            f"{len(lost)} of {len(set(acknowledged))} acknowledged records lost: {where}"
        )
    finally:
        broker.stop()
        s3.stop()
