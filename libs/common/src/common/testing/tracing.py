"""Spans recorded in memory, for tests that look at a trace.

The process keeps one tracer provider (common.tracing); a test borrows it for a while and
records what ends meanwhile, whichever service's app or worker made it.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common.tracing import install_provider


class _Recorder(SpanProcessor):
    """Hands each ended span to the exporter of the test that is recording, if any."""

    def __init__(self) -> None:
        self.exporter: InMemorySpanExporter | None = None

    def on_end(self, span: ReadableSpan) -> None:
        if self.exporter is not None:
            self.exporter.export((span,))


_recorder: _Recorder | None = None


@contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, and the spans that end inside the block in the exporter it yields."""
    global _recorder
    provider = install_provider("tests")
    if _recorder is None:
        _recorder = _Recorder()
        provider.add_span_processor(_recorder)
    exporter = InMemorySpanExporter()
    _recorder.exporter = exporter
    try:
        yield exporter
    finally:
        _recorder.exporter = None


def trace_of(spans: Sequence[ReadableSpan], trace_id: int) -> list[ReadableSpan]:
    """The spans of one trace, in the order they ended."""
    return [span for span in spans if span.context and span.context.trace_id == trace_id]


def parent_id(span: ReadableSpan) -> int | None:
    """The id of the span's parent; None for the root of a trace."""
    return span.parent.span_id if span.parent is not None else None
