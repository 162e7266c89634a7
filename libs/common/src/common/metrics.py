"""Prometheus metrics every service shares: HTTP requests per route, the outbox's backlog,
consumer lag, handler durations, retries and dead letters, calls to outside providers and
their circuit breakers (docs/observability.md lists every name and label).

An API serves them at `/metrics` on its own port, which the gateway never routes; a worker
serves them on `METRICS_PORT` when that is set. Each process keeps its own values in memory:
two workers on one host are two targets on two ports, not one shared file.

Recording a value is a dictionary look-up and an addition under a lock, in the process; no
metric costs a query of its own, except the outbox backlog, which the relay counts between
its batches, at most once per `OutboxGauges.interval_seconds`.
"""

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.logging import get_logger

log = get_logger(__name__)

# --- HTTP ---------------------------------------------------------------------------------

# Seconds; from a cached read (a few ms) to the gateway's 30 s timeout.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_LABELS = ("method", "route", "status_class")
# A path that matched no route is counted under this name rather than as itself: raw paths
# are unbounded (ids, probes of scanners), and each would be a series of its own.
UNMATCHED_ROUTE = "unmatched"
# Any other method a client makes up is counted as `_OTHER` (as OpenTelemetry names it), for
# the same reason.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "http_server_requests", "HTTP requests answered, by route template", HTTP_LABELS
)
HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template",
    HTTP_LABELS,
    buckets=HTTP_BUCKETS,
)


class HttpMetricsMiddleware:
    """Counts and times every request under its route's template (`/api/invoices/{id}`),
    its method and its status class (2xx, 4xx, 5xx)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The two series of each (method, route, status class), looked up once: `labels()`
        # takes a lock and builds a key each time, two thirds of the cost of recording.
        self._series: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router writes the route it chose into the scope it was handed.
            route = getattr(scope.get("route"), "path_format", None) or UNMATCHED_ROUTE
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "_OTHER"
            labels = (method, route, f"{status // 100}xx")
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = (
                    HTTP_REQUESTS.labels(*labels),
                    HTTP_DURATION.labels(*labels),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - started)


async def metrics_endpoint(_request: Request) -> Response:
    """Every metric of this process, in Prometheus' text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class MetricsServer:
    """A worker's metrics on a port of their own, served from a thread by prometheus_client;
    nothing when the port is 0."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        if port:
            self._server, self._thread = start_http_server(port, addr=host)
            self.port = self._server.server_port
            log.info("metrics_serving", host=host, port=self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# --- outbox -------------------------------------------------------------------------------


def _naive_utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class OutboxGauges(Collector):
    """The backlog of each outbox (rows not yet published) and the age of its oldest row.

    The relay counts them now and then; the age is worked out when Prometheus asks, from the
    oldest row's time, so it keeps growing while a stuck relay counts nothing."""

    interval_seconds = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # schema -> (rows waiting, created_at of the oldest, naive UTC, or None)
        self._seen: dict[str, tuple[int, datetime | None]] = {}
        self._counted_at: dict[str, float] = {}

    def due(self, schema: str) -> bool:
        """True when this outbox was last counted over `interval_seconds` ago."""
        return time.monotonic() - self._counted_at.get(schema, 0.0) >= self.interval_seconds

    def set(self, schema: str, backlog: int, oldest: datetime | None) -> None:
        with self._lock:
            self._seen[schema] = (backlog, oldest if backlog else None)
            self._counted_at[schema] = time.monotonic()

    def get(self, schema: str) -> tuple[int, float]:
        """The backlog and the oldest row's age in seconds, as Prometheus would read them."""
        backlog, oldest = self._seen.get(schema, (0, None))
        age = max(0.0, (_naive_utcnow() - oldest).total_seconds()) if oldest else 0.0
        return backlog, age

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backlog = GaugeMetricFamily(
            "outbox_unpublished_events", "Outbox rows not yet published", labels=["schema"]
        )
        age = GaugeMetricFamily(
            "outbox_oldest_unpublished_event_age_seconds",
            "Age of the oldest outbox row not yet published (0 when there is none)",
            labels=["schema"],
        )
        with self._lock:
            schemas = list(self._seen)
        for schema in schemas:
            rows, seconds = self.get(schema)
            backlog.add_metric([schema], rows)
            age.add_metric([schema], seconds)
        yield backlog
        yield age


OUTBOX = OutboxGauges()
REGISTRY.register(OUTBOX)
OUTBOX_PUBLISHED = Counter("outbox_published_events", "Outbox rows published to Kafka", ["schema"])

# --- consumers ----------------------------------------------------------------------------

# kafka_exporter's name and labels, so dashboards and alerts written for it work here too.
CONSUMER_LAG = Gauge(
    "kafka_consumergroup_lag",
    "Records of a partition not yet handled by its consumer group: the high watermark of the "
    "consumer's last fetch minus its position",
    ["consumergroup", "topic", "partition"],
)
# Seconds; a handler is one or two statements, a slow one waits on a provider.
HANDLER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
HANDLER_DURATION = Histogram(
    "event_handler_duration_seconds",
    "Time a consumer's handler took for one event, by event type",
    ["consumergroup", "event_type"],
    buckets=HANDLER_BUCKETS,
)
HANDLER_RETRIES = Counter(
    "event_handler_retries",
    "Handler failures that the consumer retries after a backoff",
    ["consumergroup", "event_type"],
)
DEAD_LETTERS = Counter(
    "event_dead_letters",
    "Events sent to the consumer group's dead-letter topic",
    ["consumergroup", "topic"],
)


# Seconds the lag measurement waits for a partition's position before leaving it out.
LAG_POSITION_WAIT = 0.5


class LagGauge:
    """One consumer group's lag per partition; partitions it no longer holds are removed,
    so a rebalance leaves no stale lag behind on this member."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._shown: set[tuple[str, int]] = set()

    async def measure(self, consumer: AIOKafkaConsumer) -> None:
        """Lag per held partition from what the consumer saw: the high watermark of its last
        fetch minus its position. Right on every broker, unlike `end_offsets`, which the dev
        broker under-reports; a partition not fetched yet has no watermark and shows none."""
        lags = []
        for tp in consumer.assignment():
            # A rebalance during a wait below may have taken the partition away.
            if tp not in consumer.assignment() or (highwater := consumer.highwater(tp)) is None:
                continue
            try:
                # At once when the position is known, as it is after a fetch; a partition
                # whose position is being reset is left out rather than waited for.
                position = await asyncio.wait_for(consumer.position(tp), LAG_POSITION_WAIT)
            except (IllegalStateError, TimeoutError):
                continue
            lags.append((tp.topic, tp.partition, highwater - position))
        self.update(lags)

    def update(self, lags: Iterable[tuple[str, int, int]]) -> None:
        """Set (topic, partition, lag) for the partitions held now; drop the others."""
        held = set()
        for topic, partition, lag in lags:
            CONSUMER_LAG.labels(self.group, topic, str(partition)).set(max(lag, 0))
            held.add((topic, partition))
        for topic, partition in self._shown - held:
            CONSUMER_LAG.remove(self.group, topic, str(partition))
        self._shown = held

    def clear(self) -> None:
        self.update(())


# --- providers ----------------------------------------------------------------------------

PROVIDER_CALLS = Counter(
    "provider_requests",
    "Calls to outside providers (card, email, billing platform), by outcome",
    ["provider", "operation", "outcome"],
)

# The values of the state gauge: anything above 0 is "not closed".
BREAKER_VALUES: dict[str, float] = {"closed": 0, "half-opened": 1, "opened": 2}
BREAKER_STATE = Gauge(
    "circuit_breaker_state",
    "A circuit breaker's state: 0 closed, 1 half-open (trying a call), 2 open (calls refused)",
    ["breaker"],
)


def breaker_listener(prefix: str) -> Callable[[str, str, object], None]:
    """A purgatory listener that keeps `circuit_breaker_state{breaker="<prefix>:<name>"}`."""

    def hook(name: str, event_type: str, event: object) -> None:
        breaker = f"{prefix}:{name}"
        if event_type == "circuit_breaker_created":
            BREAKER_STATE.labels(breaker).set(0)
        elif event_type == "state_changed":
            state = getattr(event, "state", "closed")
            BREAKER_STATE.labels(breaker).set(BREAKER_VALUES.get(state, 0))

    return hook


def sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    """The current value of one sample of this process's metrics (tests and checks)."""
    return REGISTRY.get_sample_value(name, labels or {})
