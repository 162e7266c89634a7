"""ASGI middleware every service installs: request ids, access log, body-size limit, and a
read retried once when its database connection turns out dead."""

import re
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.db import WRITE_SESSION_OPENED
from common.errors import PROBLEM_JSON
from common.logging import get_logger, request_log

REQUEST_ID_HEADER = b"x-request-id"
# A request id from the gateway is kept only if it looks like one; anything else is replaced.
# Matched in full (fullmatch): "$" also matches before a final newline, so "abc\n" passed
# and its newline reached the logs and the reply's headers.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._\-]{1,128}")
log = get_logger("http")


class RequestContextMiddleware:
    """Binds a request id to every log line of the request and echoes it in the reply."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = (
            incoming.decode() if _VALID_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        )
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                request_log().info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware:
    """Refuses bodies over the limit with 413, whether or not Content-Length was sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: MutableMapping[str, Any]) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps(
            {
                "type": "about:blank",
                "title": "Payload too large",
                "status": 413,
                "detail": f"The request body is larger than {self.max_bytes} bytes",
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# Methods that only read: running one again changes nothing (RFC 9110 section 9.2.1).
_READ_METHODS = frozenset({"GET", "HEAD"})


class RetryReadMiddleware:
    """Runs a read again, once, when a database connection it used was found dead.

    The pool does not ping a connection it handed out seconds ago (common.db), so a
    connection the server closed meanwhile (a restart, `KILL CONNECTION`, a failover) is
    found dead by the statement sent on it. SQLAlchemy then marks every connection of the
    pool opened before that moment as stale, so the second run gets a new connection. Only
    a read is run again: a GET or HEAD that opened no write session (a sign-in's callback is
    a GET that writes), and only before any byte of its reply was sent. A write's
    transaction was never committed, and its client's retry (with its idempotency key)
    decides.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _READ_METHODS:
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        replayed = 0
        response_started = False

        async def recording_receive() -> Message:
            message = await receive()
            received.append(message)
            return message

        async def replaying_receive() -> Message:
            nonlocal replayed
            if replayed < len(received):
                replayed += 1
                return received[replayed - 1]
            return await receive()

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        try:
            await self.app(scope, recording_receive, tracking_send)
        except DBAPIError as error:
            if (
                response_started
                or not error.connection_invalidated
                or scope.get(WRITE_SESSION_OPENED)
            ):
                raise
            log.warning("read_retried_after_disconnect", error_type=type(error.orig).__name__)
            await self.app(scope, replaying_receive, send)
