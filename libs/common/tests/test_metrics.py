"""Prometheus metrics, read the way Prometheus reads them: an API's `/metrics` counts requests
under their route's template; a worker's metrics server shows the outbox backlog rise while
the broker is away and fall back to 0, a consumer's lag on the real broker fall to 0, and
retried and dead-lettered events."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, SecretStr
from sqlalchemy import String, delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.app import create_service_app
from common.config import BaseServiceSettings
from common.db import create_engine, create_sessionmaker, service_metadata
from common.errors import NotFound
from common.events import CloudEvent, new_event
from common.inbox import EventConsumer, InboxMessageMixin
from common.kafka import ensure_topics
from common.metrics import MetricsServer
from common.outbox import OutboxMessageMixin, OutboxRelay, add_event
from common.testing.plugin import temporary_database
from common.testing.servers import MysqlServer, free_port

# Every sample of one scrape, by name and labels.
Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Scraper = Callable[[], Awaitable[Scrape]]


class Base(DeclarativeBase):
    metadata = service_metadata()


class OutboxMessage(OutboxMessageMixin, Base):
    pass


class InboxMessage(InboxMessageMixin, Base):
    pass


class Tally(Base):
    __tablename__ = "tallies"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(String(200))


class Counted(BaseModel):
    text: str


def parse(text: str) -> Scrape:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: Scrape, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


# --- an API's /metrics ------------------------------------------------------------------------


def build_app() -> FastAPI:
    settings = BaseServiceSettings(
        environment="test",
        # Never connected to: these routes do not touch the database.
        database_url=SecretStr("mysql+asyncmy://nobody@127.0.0.1:9/none"),
    )

    def configure(app: FastAPI) -> None:
        @app.get("/gauges/{gauge_id}")
        async def read_gauge(gauge_id: str) -> dict[str, str]:
            if gauge_id == "missing":
                raise NotFound("no such gauge")
            return {"id": gauge_id}

        @app.post("/gauges", status_code=201)
        async def create_gauge(gauge: Counted) -> Counted:
            return gauge

        @app.get("/gauges-broken")
        async def broken() -> None:
            raise RuntimeError("a fault of the service")

    return create_service_app(settings, title="t", description="d", configure=configure)


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[httpx.AsyncClient]:
    application = build_app()
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


async def scrape_api(api: httpx.AsyncClient) -> Scrape:
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_requests_are_counted_and_timed_per_route_template_method_and_status_class(
    api: httpx.AsyncClient,
) -> None:
    before = await scrape_api(api)
    for gauge_id in ("a", "b", str(uuid.uuid4())):
        assert (await api.get(f"/gauges/{gauge_id}")).status_code == 200
    assert (await api.get("/gauges/missing")).status_code == 404
    assert (await api.post("/gauges", json={"text": "x"})).status_code == 201
    assert (await api.post("/gauges", json={"text": ["not", "text"]})).status_code == 422
    assert (await api.get("/gauges-broken")).status_code == 500
    assert (await api.get(f"/no/such/path/{uuid.uuid4()}")).status_code == 404
    assert (await api.request("BREW", "/gauges/a")).status_code == 405
    after = await scrape_api(api)

    def counted(method: str, route: str, status_class: str) -> float:
        labels = {"method": method, "route": route, "status_class": status_class}
        return value(after, "http_server_requests_total", **labels) - value(
            before, "http_server_requests_total", **labels
        )

    assert counted("GET", "/gauges/{gauge_id}", "2xx") == 3
    assert counted("GET", "/gauges/{gauge_id}", "4xx") == 1
    assert counted("POST", "/gauges", "2xx") == 1
    assert counted("POST", "/gauges", "4xx") == 1
    assert counted("GET", "/gauges-broken", "5xx") == 1
    # A path no route matched is one series, whatever the path was.
    assert counted("GET", "unmatched", "4xx") == 1
    # So is a method nobody knows.
    assert counted("_OTHER", "/gauges/{gauge_id}", "4xx") == 1
    assert not any("no/such/path" in dict(labels).get("route", "") for _, labels in after)
    timed = {"method": "GET", "route": "/gauges/{gauge_id}", "status_class": "2xx"}
    assert (
        value(after, "http_server_request_duration_seconds_count", **timed)
        - value(before, "http_server_request_duration_seconds_count", **timed)
        == 3
    )
    assert value(after, "http_server_request_duration_seconds_sum", **timed) > value(
        before, "http_server_request_duration_seconds_sum", **timed
    )


async def test_the_metrics_are_not_in_the_api_document(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    assert "/metrics" not in document["paths"]


# --- a worker's metrics server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def metrics() -> Iterator[Scraper]:
    """A worker's metrics server on a free port, and a scrape of it over HTTP."""
    server = MetricsServer(free_port())

    async def scrape() -> Scrape:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
        response.raise_for_status()
        return parse(response.text)

    yield scrape
    server.stop()


@pytest.fixture(scope="module")
async def sessionmaker(
    mysql_server: MysqlServer,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with temporary_database(mysql_server, "common_metrics") as url:
        engine = create_engine(url, pool_size=4)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield create_sessionmaker(engine)
        await engine.dispose()


def schema_of(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    engine: AsyncEngine = sessionmaker.kw["bind"]
    return str(engine.url.database)


def counted_event(text: str) -> CloudEvent:
    return new_event("/tests", "tally.counted", uuid.uuid4(), Counted(text=text))


async def until(
    scrape: Scraper,
    check: Callable[[Scrape], bool],
    within_seconds: float = 30,
) -> Scrape:
    """Scrape until the check holds; the last scrape, or a failed test."""
    async with asyncio.timeout(within_seconds):
        while True:
            seen = await scrape()
            if check(seen):
                return seen
            await asyncio.sleep(0.1)


async def test_the_outbox_backlog_rises_while_the_broker_is_away_and_falls_back_to_zero(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str, metrics: Scraper
) -> None:
    schema = schema_of(sessionmaker)
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(OutboxMessage))
    topic = f"test.{uuid.uuid4().hex[:8]}"
    nowhere = f"127.0.0.1:{free_port()}"
    stop = asyncio.Event()
    stalled = asyncio.create_task(
        OutboxRelay(sessionmaker, OutboxMessage, nowhere, idle_seconds=0.05).run(stop)
    )
    try:
        async with sessionmaker() as session, session.begin():
            for n in range(3):
                add_event(session, OutboxMessage, topic, counted_event(f"waiting {n}"))
        # The age counts whole seconds (created_at keeps seconds): over one, it has grown.
        stuck = await until(
            metrics,
            lambda seen: (
                value(seen, "outbox_unpublished_events", schema=schema) == 3
                and value(seen, "outbox_oldest_unpublished_event_age_seconds", schema=schema) >= 1.5
            ),
        )
    finally:
        stop.set()
        await asyncio.wait_for(stalled, 20)
    published_before = value(stuck, "outbox_published_events_total", schema=schema)

    stop = asyncio.Event()
    await ensure_topics(kafka_bootstrap, [topic])
    relay = asyncio.create_task(
        OutboxRelay(sessionmaker, OutboxMessage, kafka_bootstrap, idle_seconds=0.05).run(stop)
    )
    try:
        drained = await until(
            metrics, lambda seen: value(seen, "outbox_unpublished_events", schema=schema) == 0
        )
    finally:
        stop.set()
        await asyncio.wait_for(relay, 20)

    assert value(drained, "outbox_oldest_unpublished_event_age_seconds", schema=schema) == 0
    assert value(drained, "outbox_published_events_total", schema=schema) == published_before + 3


async def test_a_consumer_reports_its_lag_per_partition_until_it_has_caught_up(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str, metrics: Scraper
) -> None:
    """Lag from the consumer's own fetches (high watermark minus position), on the real broker:
    the tenth event waits until a scrape has shown lag, so the gauge is seen above 0 before it
    falls to 0."""
    topic = f"test.{uuid.uuid4().hex[:8]}"
    group = f"tallies-{uuid.uuid4().hex[:6]}"
    events = [counted_event(f"{group} {n}") for n in range(30)]
    lag_seen = asyncio.Event()

    async def count(session: AsyncSession, event: CloudEvent) -> None:
        text = Counted.model_validate(event.data).text
        if text == f"{group} 9":
            await asyncio.wait_for(lag_seen.wait(), 30)
        session.add(Tally(text=text))

    await ensure_topics(kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, event.model_dump_json().encode(), partition=0)
    finally:
        await producer.stop()
    consumer = EventConsumer(
        name=group,
        topics=[topic],
        handlers={"tally.counted": count},
        sessionmaker=sessionmaker,
        inbox_model=InboxMessage,
        bootstrap_servers=kafka_bootstrap,
        max_batch=5,
    )
    lag = {"consumergroup": group, "topic": topic, "partition": "0"}
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        behind = await until(
            metrics, lambda seen: value(seen, "kafka_consumergroup_lag", **lag) > 0
        )
        lag_seen.set()
        caught_up = await until(
            metrics,
            lambda seen: (
                ("kafka_consumergroup_lag", tuple(sorted(lag.items()))) in seen
                and value(seen, "kafka_consumergroup_lag", **lag) == 0
            ),
        )
    finally:
        lag_seen.set()
        stop.set()
        await asyncio.wait_for(running, 20)

    # The first fetch of five was handled: the other 25 were behind it.
    assert value(behind, "kafka_consumergroup_lag", **lag) == 25
    handled = {"consumergroup": group, "event_type": "tally.counted"}
    assert value(caught_up, "event_handler_duration_seconds_count", **handled) >= 30
    # A stopped consumer holds no partition: its lag series is gone.
    assert ("kafka_consumergroup_lag", tuple(sorted(lag.items()))) not in await metrics()


async def test_retried_and_dead_lettered_events_are_counted(
    sessionmaker: async_sessionmaker[AsyncSession], kafka_bootstrap: str, metrics: Scraper
) -> None:
    topic = f"test.{uuid.uuid4().hex[:8]}"
    group = f"tallies-{uuid.uuid4().hex[:6]}"
    poison, fine = counted_event("poison"), counted_event("fine")

    async def count(session: AsyncSession, event: CloudEvent) -> None:
        if Counted.model_validate(event.data).text == "poison":
            raise ValueError("this handler cannot take that event")
        session.add(Tally(text=group))

    consumer = EventConsumer(
        name=group,
        topics=[topic],
        handlers={"tally.counted": count},
        sessionmaker=sessionmaker,
        inbox_model=InboxMessage,
        bootstrap_servers=kafka_bootstrap,
        max_attempts=3,
        retry_base_seconds=0.05,
    )
    await ensure_topics(kafka_bootstrap, [topic, consumer.dead_letter_topic])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for event in (poison, fine):
            await producer.send_and_wait(
                topic, event.model_dump_json().encode(), key=event.subject.encode()
            )
        await producer.send_and_wait(topic, b"not an event", key=b"k")
    finally:
        await producer.stop()
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    dead = {"consumergroup": group, "topic": topic}
    try:
        seen = await until(
            metrics, lambda seen: value(seen, "event_dead_letters_total", **dead) >= 2
        )
        await asyncio.sleep(0.5)  # a third dead letter, if there were one, would show by now
        seen = await metrics()
    finally:
        stop.set()
        await asyncio.wait_for(running, 20)

    # The poison event and the undecodable record; the poison one after 3 attempts.
    assert value(seen, "event_dead_letters_total", **dead) == 2
    retried = {"consumergroup": group, "event_type": "tally.counted"}
    assert value(seen, "event_handler_retries_total", **retried) == 2
