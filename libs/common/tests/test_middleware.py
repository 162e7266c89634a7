"""The request-id middleware keeps a well-formed id from the gateway and replaces the rest;
a read that met a dead database connection is run again once, and nothing else is."""

from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.types import Message, Receive, Scope, Send

from common.db import WRITE_SESSION_OPENED
from common.middleware import RequestContextMiddleware, RetryReadMiddleware


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _answered_id(incoming: bytes) -> bytes:
    """The x-request-id the reply carries when the request came with `incoming`."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-request-id", incoming)],
    }
    await RequestContextMiddleware(_ok)(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    return dict(start["headers"])[b"x-request-id"]


async def test_a_well_formed_request_id_is_kept() -> None:
    assert await _answered_id(b"gw-1a2b.3c_4") == b"gw-1a2b.3c_4"


@pytest.mark.parametrize(
    "incoming",
    [
        b"abc\n",
        b"abc\nX-Evil: 1",
        b"abc\r\nSet-Cookie: a=b",
        b"abc def",
        b"a" * 129,
        b"",
    ],
)
async def test_anything_else_is_replaced_by_a_fresh_id(incoming: bytes) -> None:
    answered = await _answered_id(incoming)

    assert answered != incoming
    assert len(answered) == 32
    assert answered.isalnum()


def _disconnect() -> DBAPIError:
    return OperationalError("SELECT 1", {}, Exception("server gone"), connection_invalidated=True)


class _FailsOnce:
    """An app whose first run meets a dead connection (after `before_failing` has run)."""

    def __init__(self, error: DBAPIError, before_failing: Any = None) -> None:
        self.runs = 0
        self.error = error
        self.before_failing = before_failing

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.runs += 1
        if self.runs == 1:
            if self.before_failing is not None:
                await self.before_failing(scope, send)
            raise self.error
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _run(app: Any, method: str) -> list[Any]:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/", "headers": []}
    await RetryReadMiddleware(app)(scope, receive, send)
    return sent


async def test_a_read_that_met_a_dead_connection_is_run_again_once() -> None:
    app = _FailsOnce(_disconnect())

    sent = await _run(app, "GET")

    assert app.runs == 2
    assert sent[0]["status"] == 200


@pytest.mark.parametrize(
    ("method", "error", "before_failing"),
    [
        pytest.param("POST", _disconnect(), None, id="a write"),
        pytest.param(
            "GET",
            _disconnect(),
            lambda scope, _send: _mark_write(scope),
            id="a GET that opened a write session",
        ),
        pytest.param(
            "GET",
            _disconnect(),
            lambda _scope, send: send({"type": "http.response.start", "status": 200}),
            id="a reply already started",
        ),
        pytest.param(
            "GET",
            OperationalError("SELECT 1", {}, Exception("deadlock"), connection_invalidated=False),
            None,
            id="another database error",
        ),
    ],
)
async def test_nothing_else_is_run_again(
    method: str, error: DBAPIError, before_failing: Any
) -> None:
    app = _FailsOnce(error, before_failing)

    with pytest.raises(DBAPIError):
        await _run(app, method)

    assert app.runs == 1


async def _mark_write(scope: Any) -> None:
    scope[WRITE_SESSION_OPENED] = True
