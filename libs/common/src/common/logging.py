"""Structured logging: one JSON object a line in production, readable lines in development.

Request and event ids are bound in context variables so every line written while handling
one request or one message carries them.
"""

import logging
import sys
import traceback
from typing import Any

import structlog

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


def _redact_secrets(
    _logger: object, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def _render_exception(
    _logger: object, _method: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Replace exc_info with the traceback's frames and the exception types only.

    A rich traceback prints every frame's local variables, and an exception's message can
    quote its input (Pydantic's does): either can carry a request body with a card number or
    a token. Where and what failed is enough to find the bug; the values stay out.
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
    causes: list[str] = []
    cause = error.__cause__ or error.__context__
    while cause is not None and len(causes) < 5:
        causes.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    lines.append(type(error).__name__ + (f" (caused by {', '.join(causes)})" if causes else ""))
    event_dict["exception"] = "\n".join(lines)
    return event_dict


def configure_logging(service: str, level: str = "INFO", fmt: str = "console") -> None:
    """Route structlog and the standard library through one renderer."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
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
