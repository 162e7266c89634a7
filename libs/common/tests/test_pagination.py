"""Cursors: what the codec signed comes back; anything altered is refused naming `cursor`."""

import pytest

from common.errors import InvalidInput
from common.pagination import CursorCodec

codec = CursorCodec(b"secret")


def test_a_cursor_round_trips() -> None:
    position = {"q": "invoices", "k": ["2030-01-31", "Jane"], "id": "ab"}

    assert codec.decode(codec.encode(position)) == position


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        "a.b.c",
        codec.encode({"id": 1})[:-2] + "AA",
        CursorCodec(b"other secret").encode({"id": 1}),
        codec.encode({"id": 1}).replace(".", "x."),
    ],
)
def test_an_altered_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        codec.decode(cursor)

    assert refused.value.field == "cursor"
