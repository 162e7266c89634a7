"""The request-id middleware keeps a well-formed id from the gateway and replaces the rest."""

import pytest
from starlette.types import Message, Receive, Scope, Send

from common.middleware import RequestContextMiddleware


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
