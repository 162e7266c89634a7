"""The drill's own servers keep what they hold across a SIGKILL and a restart."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from common.testing.durable import DurableBroker, PrivateMariadb, S3rver
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
    s3 = S3rver(tmp_path / "s3", ["tansu"])
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
