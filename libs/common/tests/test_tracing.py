"""Traces through the outbox and the inbox, on a real schema and a real broker: an event
written inside a span carries that span's context, the relay's send and the consumer's
handler are its children, the handler's statements and events continue the trace, and log
lines carry the ids of the span they were written in."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent, new_event
from common.inbox import EventConsumer
from common.kafka import create_producer
from common.logging import configure_logging, get_logger
from common.outbox import OutboxRelay, add_event
from common.testing.servers import MysqlServer
from common.testing.tracing import parent_id, recorded_spans, trace_of
from common.tracing import install_provider, make_sampler, resuming, trace_context

from .notes import InboxMessage, Note, NoteWritten, OutboxMessage, notes_schema

log = get_logger("tests")


@pytest.fixture(scope="module")
async def sessionmaker(
    mysql_server: MysqlServer,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    # Tracing on before the engine exists: an engine's statements are traced from its start.
    install_provider("tests")
    async with notes_schema(mysql_server, "tracing_test") as sessions:
        yield sessions


def note_event(text: str) -> CloudEvent:
    return new_event("/tests", "note.written", uuid.uuid4(), NoteWritten(text=text))


async def stored_event(
    sessionmaker: async_sessionmaker[AsyncSession], topic: str
) -> CloudEvent | None:
    async with sessionmaker() as session:
        payload = await session.scalar(
            select(OutboxMessage.payload).where(OutboxMessage.topic == topic)
        )
    return None if payload is None else CloudEvent.model_validate_json(payload)


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    context = span.context
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, [span.name for span in spans]
    return named[0]


async def test_an_event_carries_the_trace_from_its_writer_through_its_handler(
    sessionmaker: async_sessionmaker[AsyncSession],
    kafka_bootstrap: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("tests", "INFO", "json")
    suffix = uuid.uuid4().hex[:8]
    topic, reply_topic, group = f"test.{suffix}", f"test.{suffix}.replies", f"notes-{suffix}"
    event = note_event("traced")

    async def write_note(session: AsyncSession, event: CloudEvent) -> None:
        log.info("note_handled")
        session.add(Note(text=f"{group}:{NoteWritten.model_validate(event.data).text}"))
        add_event(session, OutboxMessage, reply_topic, note_event("reply"))

    consumer = EventConsumer(
        name=group,
        topics=[topic],
        handlers={"note.written": write_note},
        sessionmaker=sessionmaker,
        inbox_model=InboxMessage,
        bootstrap_servers=kafka_bootstrap,
    )
    with recorded_spans() as exporter:
        log.info("outside_any_span")
        with trace.get_tracer("tests").start_as_current_span("request"):
            async with sessionmaker() as session, session.begin():
                add_event(session, OutboxMessage, topic, event)
        stored = await stored_event(sessionmaker, topic)
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        try:
            await OutboxRelay(sessionmaker, OutboxMessage, kafka_bootstrap).publish_batch(producer)
        finally:
            await producer.stop()
        stop = asyncio.Event()
        running = asyncio.create_task(consumer.run(stop))
        try:
            for _ in range(300):
                if (reply := await stored_event(sessionmaker, reply_topic)) is not None:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(running, 20)
        spans = list(exporter.get_finished_spans())

    request = only(spans, "request")
    assert request.context is not None
    flow = trace_of(spans, request.context.trace_id)
    send = only(flow, f"send {topic}")
    process = only(flow, "process note.written")
    assert process.context is not None
    in_handler = [span.name for span in flow if parent_id(span) == process.context.span_id]

    # The outbox row holds the context of the span that wrote it, as the envelope's
    # distributed-tracing extension.
    assert stored is not None
    assert stored.traceparent == traceparent_of(request)
    assert '"traceparent"' in stored.model_dump_json()
    assert event.model_dump_json().count("traceparent") == 0  # none when written outside a span
    # The relay's send and the handler are children of the writer's span.
    assert send.kind == SpanKind.PRODUCER
    assert parent_id(send) == request.context.span_id
    assert process.kind == SpanKind.CONSUMER
    assert parent_id(process) == request.context.span_id
    assert process.attributes is not None
    assert process.attributes["cloudevents.event_id"] == event.id
    # The handler's statements and the event it wrote continue the trace.
    assert any(name.startswith("INSERT") for name in in_handler), in_handler
    assert reply is not None
    assert reply.traceparent == traceparent_of(process)

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    handled = [line for line in lines if line.get("event") == "note_handled"]
    outside = [line for line in lines if line.get("event") == "outside_any_span"]
    assert len(handled) == 1
    assert handled[0]["trace_id"] == f"{request.context.trace_id:032x}"
    assert handled[0]["span_id"] == f"{process.context.span_id:016x}"
    assert outside
    assert "trace_id" not in outside[0]


def _remote_parent(sampled: bool) -> Context:
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(NonRecordingSpan(context))


@pytest.mark.parametrize("kind", [SpanKind.CLIENT, SpanKind.SERVER, SpanKind.CONSUMER])
def test_a_statement_outside_any_operation_is_no_trace_of_its_own(kind: SpanKind) -> None:
    sampler = make_sampler("parentbased_traceidratio", 1.0)

    alone = sampler.should_sample(Context(), 1, "SELECT", kind)
    within = sampler.should_sample(_remote_parent(sampled=True), 1, "SELECT", kind)

    assert alone.decision.is_sampled() == (kind != SpanKind.CLIENT)
    assert within.decision.is_sampled()


def test_a_trace_is_kept_or_dropped_whole_whatever_the_ratio_of_new_ones() -> None:
    sampler = make_sampler("parentbased_traceidratio", 0.0)

    new = sampler.should_sample(Context(), 1, "GET /api/invoices", SpanKind.SERVER)
    kept = sampler.should_sample(_remote_parent(sampled=True), 1, "process", SpanKind.CONSUMER)
    dropped = sampler.should_sample(_remote_parent(sampled=False), 1, "process", SpanKind.CONSUMER)

    assert not new.decision.is_sampled()
    assert kept.decision.is_sampled()
    assert not dropped.decision.is_sampled()


def test_work_resumed_later_joins_the_trace_that_stored_its_context() -> None:
    """A row that kept `trace_context()` (a queued email) is worked on later, elsewhere, in a
    child of that context; a row kept outside any trace gets no span."""
    with recorded_spans() as exporter:
        tracer = trace.get_tracer("tests")
        with tracer.start_as_current_span("queue it") as queueing:
            stored = trace_context()
        with resuming("send it", stored["traceparent"], stored.get("tracestate")) as span:
            assert span.is_recording()
        with resuming("untraced", None, None) as span:
            assert not span.is_recording()
        spans = list(exporter.get_finished_spans())

    sending = next(span for span in spans if span.name == "send it")
    assert sending.context is not None
    assert sending.context.trace_id == queueing.get_span_context().trace_id
    assert parent_id(sending) == queueing.get_span_context().span_id
    assert "untraced" not in {span.name for span in spans}
