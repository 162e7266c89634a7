"""Log lines never carry a secret, not even inside a traceback."""

import logging

import pytest

from common.logging import configure_logging, get_logger, redact

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
