"""Log lines never carry a secret, not even inside a traceback."""

import logging

import pytest

from common.logging import configure_logging, get_logger

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
