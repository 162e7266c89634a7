"""Structured logging: one JSON object a line in production, readable lines in development.

Request and event ids are bound in context variables so every line written while handling
one request or one message carries them.
"""

import logging
import re
import sys
import traceback
from typing import Any

import structlog
from opentelemetry import trace

# Keys whose values never reach a log line, whatever a caller passes.
SECRET_KEYS = frozenset(
    {
        "password",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "code",
        "code_verifier",
        "client_secret",
        "authorization",
        "card",
        "secret",
    }
)


def _add_trace_ids(
    _logger: object, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """The ids of the current span's trace and of the span (common.tracing), to find a log
    line's trace and a trace's log lines."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def _redact_secrets(
    _logger: object, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


# Patterns of secrets an exception's message can quote. Messages are worth logging (they say
# what failed: "Unknown column", "Connection refused"), but a library may put its input in
# them: Pydantic quotes the value it refused, a driver the statement's parameters, an HTTP
# client the URL with its credentials.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Pydantic's "[type=..., input_value=..., input_type=...]": the refused input itself.
    (re.compile(r"input_value=.*?(?=, input_type=|\]|$)", re.DOTALL), "input_value=[redacted]"),
    # A JWT (access, refresh or id token): three base64url parts, the first a JSON header.
    (re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*"), "[redacted token]"),
    # An Authorization header's value.
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w\-.~+/]+=*"), r"\1 [redacted]"),
    # user:password@ in a URL (a database or broker address).
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@"), "[redacted]@"),
    # key=value, key: value, "key": "value" for the names of secrets.
    (
        re.compile(
            r"(?i)\b([\w-]*(?:password|passwd|secret|token|api[_-]?key|authorization|"
            r"card|cvc|cvv|code_verifier)[\w-]*)(['\"]?\s*[:=]\s*)(['\"]?)[^\s'\",&}\]]+"
        ),
        r"\1\2\3[redacted]",
    ),
    # A run of 12 to 19 digits, spaces or dashes between them allowed: a card number.
    (re.compile(r"(?<!\d)\d(?:[ -]?\d){11,18}(?!\d)"), "[redacted number]"),
)
MESSAGE_LIMIT = 500


def redact(text: str) -> str:
    """The text with anything that looks like a secret replaced, cut to MESSAGE_LIMIT."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT] + " [cut]"
    return text


def _describe(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {redact(message)}" if message else type(error).__name__


def _render_exception(
    _logger: object, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Replace exc_info with the traceback's frames, and each exception's type and message
    with secrets redacted.

    A rich traceback prints every frame's local variables, which can hold a request body
    with a card number or a token: those stay out. Messages say what failed, so they stay,
    passed through `redact` first.
    """
    exc_info = event_dict.pop("exc_info", None)
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    _, error, tb = exc_info
    if error is None:
        return event_dict
    lines = ["Traceback (most recent call last):"]
    lines += [
        f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}'
        for frame in traceback.extract_tb(tb)
    ]
    lines.append(_describe(error))
    cause = error.__cause__ or error.__context__
    causes = 0
    while cause is not None and causes < 5:
        lines.append(f"  caused by {_describe(cause)}")
        cause = cause.__cause__ or cause.__context__
        causes += 1
    event_dict["exception"] = "\n".join(lines)
    return event_dict


def configure_logging(service: str, level: str = "INFO", fmt: str = "console") -> None:
    """Route structlog and the standard library through one renderer."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    global _request_log
    _request_log = structlog.wrap_logger(
        _StdoutLines(),
        processors=[*shared, _render_exception, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=True,
    )
    structlog.configure(
        # Lines below the level are dropped before any processor spends time on them.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _render_exception,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR; the runner logs outages once itself.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger that carries the bound request or event id."""
    return structlog.stdlib.get_logger(name)


class _StdoutLines:
    """structlog's own output for the hot path: a rendered line written to stdout as it is
    at the time (a test's capture included), flushed like the standard library's handler."""

    def msg(self, message: str) -> None:
        stream = sys.stdout
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = error = critical = exception = msg


_request_log: Any = structlog.wrap_logger(
    _StdoutLines(), wrapper_class=structlog.make_filtering_bound_logger(logging.INFO)
)


def request_log() -> Any:
    """The logger of one line per request: the same processors and renderer as every other
    line, without the standard library's logging machinery (records, handlers, formatter),
    which costs more than the rest of a cheap request's edge. A line below the configured
    level costs one no-op call."""
    return _request_log
