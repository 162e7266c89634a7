"""Log lines never carry a secret, not even inside a traceback."""

import json
import logging
from typing import Any

import pytest

from common.logging import configure_logging, get_logger, redact
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
    assert "RuntimeError: card [redacted number] refused" in written
    assert "caused by ValueError: invalid literal for int()" in written


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def fail_in_a_library(token: str, card_number: str) -> None:
    """What a driver or an HTTP client does: its message quotes the values it was given."""
    try:
        raise ConnectionError(
            "mysql://ledger:hunter2@db:3306/invoice_svc refused; "
            f"api_key=sk_live_abc123 password: 'pa55word' card {card_number}"
        )
    except ConnectionError as exc:
        raise ValueError(
            f"Unknown column 'client_nmae' in {{'Authorization': 'Bearer {token}'}}"
        ) from exc


def test_a_traceback_keeps_each_message_with_its_secrets_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("test", "INFO", "json")
    try:
        fail_in_a_library(JWT, "4242 4242 4242 4242")
    except ValueError:
        get_logger("test").exception("unhandled_error")

    written = capsys.readouterr().out
    # What failed is there: types, the messages' words, the frames.
    assert "ValueError: Unknown column 'client_nmae'" in written
    assert "caused by ConnectionError: mysql://[redacted]@db:3306/invoice_svc refused" in written
    assert "fail_in_a_library" in written
    # What would open a door is not.
    for secret in (JWT, "hunter2", "sk_live_abc123", "pa55word", "4242 4242 4242 4242"):
        assert secret not in written
    # Nor is a fragment of the token.
    assert "c2lnbmF0dXJl" not in written


def test_a_validation_error_logs_where_the_input_was_wrong_but_not_the_input() -> None:
    from pydantic import BaseModel, ValidationError

    class Card(BaseModel):
        number: int
        expiry: str

    with pytest.raises(ValidationError) as refused:
        Card.model_validate({"number": f"{CARD}x", "expiry": 1})
    text = redact(str(refused.value))
    assert "number" in text
    assert "input_value=[redacted]" in text
    assert CARD not in text
    assert len(redact("x" * 2000)) < 520


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
