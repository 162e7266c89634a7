"""Traces across HTTP and Kafka, with OpenTelemetry.

One trace follows a piece of work from the request that started it, through every service it
reaches: FastAPI's server span, httpx's client spans (which pass the context on in the
`traceparent` header), a span per SQL statement, and across Kafka through the outbox.

Kafka carries the context in the event itself: `add_event` stores the context of the span it
is called in as the event's CloudEvents distributed-tracing extension (`traceparent`, and
`tracestate` when there is one), inside the envelope the outbox row holds. The relay's send
span and the consumer's handler span are children of that context, so the handler's SQL and
the events it writes in turn belong to the same trace. The context travels in the envelope
rather than in a Kafka header because the envelope is what the outbox stores and what the
consumer reads; the relay publishes in structured mode, where the CloudEvents Kafka binding
puts every attribute in the envelope. The handler extracts it itself: a consumer span that
the Kafka client made would end at the fetch, before the handler runs.

Set up once per process (`configure_tracing`, from the app factory and the worker), by
settings: `OTEL_EXPORTER_OTLP_ENDPOINT` sends spans to an OTLP collector over HTTP/protobuf;
without it spans are made (and their ids are in the logs) but not sent anywhere.
`OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` choose how many new traces are kept; a
span with a parent follows its parent's decision, so a trace is kept whole or not at all.
`OTEL_SDK_DISABLED=true` turns tracing off: no spans, no instrumentation.
"""

import contextlib
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from sqlalchemy.ext.asyncio import AsyncEngine

from common.config import BaseServiceSettings, SamplerName
from common.events import CloudEvent

# Requests that are not work: probes and scrapes, several a second from every orchestrator.
UNTRACED_PATHS = ("/health", "/metrics")

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("common.tracing")
_enabled = False


class _WithinAnOperation(Sampler):
    """Leaves out a client span that has no parent: a statement of the outbox relay's wait,
    a key-set refresh in the background. Alone, each would be a trace of one span, several
    a second, that tells nothing; inside a request or a handler they are kept as usual."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if kind == SpanKind.CLIENT:
            parent = trace.get_current_span(parent_context).get_span_context()
            if not parent.is_valid:
                return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"WithinAnOperation{{{self.delegate.get_description()}}}"


def make_sampler(name: SamplerName = "parentbased_traceidratio", ratio: float = 1.0) -> Sampler:
    """The sampler the OpenTelemetry name and ratio describe, lone client spans left out."""
    root: Sampler
    if name.endswith("traceidratio"):
        root = TraceIdRatioBased(ratio)
    elif name.endswith("always_on"):
        root = ALWAYS_ON
    else:
        root = ALWAYS_OFF
    root = _WithinAnOperation(root)
    return ParentBased(root) if name.startswith("parentbased_") else root


def install_provider(
    service: str, sampler: Sampler | None = None, otlp_endpoint: str | None = None
) -> TracerProvider:
    """The process's tracer provider: the one installed before, or a new one.

    OpenTelemetry keeps one provider per process and refuses to replace it; a process runs
    one service, so the first call's resource and sampler are the process's."""
    global _enabled
    _enabled = True
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(
        sampler=sampler or make_sampler(),
        resource=Resource.create({SERVICE_NAME: service}),
    )
    if otlp_endpoint:
        # The endpoint names the collector; traces go to its /v1/traces, as the OTLP
        # specification says for OTEL_EXPORTER_OTLP_ENDPOINT.
        exporter = OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    return provider


def configure_tracing(service: str, settings: BaseServiceSettings) -> None:
    """Trace this process as the settings say (see the module's docstring)."""
    if settings.otel_sdk_disabled:
        return
    install_provider(
        service,
        make_sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg),
        settings.otel_exporter_otlp_endpoint,
    )


def enabled() -> bool:
    """True once tracing is set up in this process."""
    return _enabled


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return str(scope.get("path", "")).startswith(UNTRACED_PATHS)


def server_telemetry() -> TelemetryConfig:
    """FastAPI's own OpenTelemetry: a server span around every request but the probes', named
    after its route, the context of an incoming `traceparent` header its parent. Only that
    span: no spans of dependencies, endpoint and serialization inside it (three more spans a
    request, saying little the statements' spans do not), no metrics (Prometheus has them),
    no log records (structlog writes the logs).

    Chosen over opentelemetry-instrumentation-fastapi, whose middleware finds the route by
    matching every route again and collects attributes the span does not need: three times
    the cost per request (docs/observability.md, "What it costs")."""
    return {
        "tracing": True,
        "operation_spans": False,
        "metrics": False,
        "logs": False,
        "auto_configure": False,
        "exclude": _untraced,
    }


def trace_engine(engine: AsyncEngine) -> None:
    """A client span around every statement the engine runs, with the statement's text (its
    parameters, which may hold personal data, are never recorded)."""
    if not _enabled:
        return
    usage = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("db.client.connections")
    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]


def trace_context() -> dict[str, str]:
    """The current span's context as CloudEvents distributed-tracing attributes
    (`traceparent`, and `tracestate` when there is one); empty outside a span."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def _event_context(traceparent: str | None, tracestate: str | None) -> Context:
    """The context an event carries; an empty one (a new trace) when it carries none."""
    if traceparent is None:
        return Context()
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _propagator.extract(carrier, context=Context())


# How the relay finds the context in an outbox row without parsing the whole envelope:
# `CloudEvent` writes its tracing attributes last, in compact JSON.
_TRACEPARENT = '"traceparent":"'
_TRACESTATE = '"tracestate":"'


def _payload_context(payload: str) -> Context | None:
    start = payload.rfind(_TRACEPARENT)
    if start < 0:
        return None
    start += len(_TRACEPARENT)
    traceparent = payload[start : payload.find('"', start)]
    tracestate = None
    state_at = payload.find(_TRACESTATE, start)
    if state_at >= 0:
        state_at += len(_TRACESTATE)
        tracestate = payload[state_at : payload.find('"', state_at)]
    return _event_context(traceparent, tracestate)


@contextlib.contextmanager
def publishing(rows: Iterable[Any]) -> Iterator[None]:
    """A send span per outbox row that carries a trace context, from the hand-over to the
    producer to the broker's acknowledgement, each a child of the span that wrote the row.
    Rows without a context (written outside any span) get none. A row is anything with
    the outbox's `topic`, `message_key` and `payload`."""
    if not _enabled:
        yield
        return
    spans = []
    for row in rows:
        parent = _payload_context(row.payload)
        if parent is None:
            continue
        spans.append(
            _tracer.start_span(
                f"send {row.topic}",
                context=parent,
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": row.topic,
                    "messaging.kafka.message.key": row.message_key,
                },
            )
        )
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()


@contextlib.contextmanager
def handling(event: CloudEvent, consumer: str) -> Iterator[trace.Span]:
    """The span of one event's handler, current while it runs: a child of the context the
    event carries (or the root of a new trace), so the handler's statements and the events it
    writes continue the trace of the work that wrote the event."""
    if not _enabled:
        yield trace.INVALID_SPAN
        return
    with _tracer.start_as_current_span(
        f"process {event.type}",
        context=_event_context(event.traceparent, event.tracestate),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": consumer,
            "cloudevents.event_id": event.id,
            "cloudevents.event_type": event.type,
            "cloudevents.event_source": event.source,
        },
    ) as span:
        yield span
