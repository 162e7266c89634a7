"""Log lines never carry a secret, not even inside a traceback."""

import json
import logging
from typing import Any

import pytest

from common.logging import configure_logging, get_logger
from common.middleware import RequestContextMiddleware

CARD = "1234567812345678"


def fail_with_a_card_in_hand(card_number: str) -> None:
    body = {"card": {"number": card_number}}
    try:
        int(body["card"]["number"] + "x")
    except ValueError as exc:
        raise RuntimeError(f"card {card_number} refused") from exc


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_traceback_names_frames_and_types_but_no_values(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("test", "INFO", fmt)
    try:
        fail_with_a_card_in_hand(CARD)
    except RuntimeError:
        get_logger("test").exception("unhandled_error", card=CARD)
        logging.getLogger("stdlib").exception("unhandled in a library")

    written = capsys.readouterr().out
    assert CARD not in written
    assert "fail_with_a_card_in_hand" in written
    assert "RuntimeError (caused by ValueError)" in written


async def _answer_no_content(_scope: Any, _receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _request(path: str) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Any) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"x-request-id", b"r-1")]}
    await RequestContextMiddleware(_answer_no_content)(scope, receive, send)


async def test_each_request_is_one_line_with_its_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", "INFO", "json")

    await _request("/things")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 1, lines
    assert {k: v for k, v in lines[0].items() if k not in ("duration_ms", "timestamp")} == {
        "event": "request",
        "level": "info",
        "method": "GET",
        "path": "/things",
        "status": 204,
        "request_id": "r-1",
        "service": "test",
    }


async def test_request_lines_follow_the_configured_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("test", "WARNING", "json")

    await _request("/things")

    assert capsys.readouterr().out == ""
