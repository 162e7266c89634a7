"""Opaque, signed cursors for keyset pagination.

A cursor carries the last row's sort key and the query it belongs to. It is signed so a
client can neither forge a position nor reuse a cursor with other filters; either gives a
422 naming the `cursor` parameter.
"""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Depends, Request

from common.errors import InvalidInput

T = TypeVar("T")

_SIGNATURE_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Encodes a JSON-able position with an HMAC; decodes only what it signed."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, position: dict[str, Any]) -> str:
        body = orjson.dumps(position)
        return f"{_b64(body)}.{_b64(self._sign(body))}"

    def decode(self, cursor: str) -> dict[str, Any]:
        """The position, or InvalidInput when the cursor was altered or is not ours."""
        invalid = InvalidInput("The cursor is not one this API issued", field="cursor")
        body_part, _, signature_part = cursor.partition(".")
        try:
            body, signature = _unb64(body_part), _unb64(signature_part)
        except (binascii.Error, ValueError):
            raise invalid from None
        if not hmac.compare_digest(signature, self._sign(body)):
            raise invalid
        try:
            position = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise invalid from None
        if not isinstance(position, dict):
            raise invalid
        return position


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing and the cursor of the next one (None at the end)."""

    items: list[T]
    next_cursor: str | None


async def _cursor_codec(request: Request) -> CursorCodec:
    # Async on purpose: FastAPI runs a plain `def` dependency in a thread pool.
    codec: CursorCodec = request.app.state.cursor_codec
    return codec


# The app's codec; a service that pages sets `app.state.cursor_codec` when it is created.
CursorCodecDep = Annotated[CursorCodec, Depends(_cursor_codec)]
