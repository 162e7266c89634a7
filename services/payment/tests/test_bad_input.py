"""Bad input of every kind: a 4xx problem+json naming the field, never a 500, nothing stored
and nothing charged."""

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment.models import OutboxMessage, Payment, WalletAccount, WalletEntry
from payment.schemas import CardIn
from simulators.testing import FakePayControl

from .factories import SEED_CARD_SPACED, card, invoice_payment, top_up


def _last_month() -> str:
    today = datetime.now(UTC)
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{month:02d}-{year}"


def _this_month() -> str:
    today = datetime.now(UTC)
    return f"{today.month:02d}-{today.year}"


CARD_CASES: list[tuple[dict[str, Any], str]] = [
    ({"number": "1234-5678-1234-5678"}, "card.number"),
    ({"number": "12345678901"}, "card.number"),  # 11 digits
    ({"number": "12345678901234567890"}, "card.number"),  # 20 digits
    ({"number": "abcd efgh ijkl mnop"}, "card.number"),
    ({"number": ""}, "card.number"),
    ({"number": 1234567812345678}, "card.number"),
    ({"number": "١٢٣٤٥٦٧٨١٢٣٤٥٦٧٨"}, "card.number"),  # other scripts' digits
    ({"expiry": "01/2040"}, "card.expiry"),
    ({"expiry": "13-2040"}, "card.expiry"),
    ({"expiry": "1-2040"}, "card.expiry"),
    ({"expiry": _last_month()}, "card.expiry"),
    ({"expiry": "01-2020"}, "card.expiry"),
    ({"expiry": "01-9999"}, "card.expiry"),
    ({"name": ""}, "card.name"),
    ({"name": "   "}, "card.name"),
    ({"name": "x" * 101}, "card.name"),
    ({"name": "J\nDoe"}, "card.name"),
    ({"cvv": "12"}, "card.cvv"),
    ({"cvv": 123}, "card.cvv"),
    ({"pin": "1234"}, "card.pin"),
]


@pytest.mark.parametrize(
    ("change", "field"), CARD_CASES, ids=[f"{f}={c}"[:40] for c, f in CARD_CASES]
)
async def test_a_malformed_or_expired_card_is_422_naming_the_field_and_nothing_is_charged(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
    change: dict[str, Any],
    field: str,
) -> None:
    before = await _state(sessionmaker, fakepay)

    response = await api.post(
        "/internal/invoice-payments", json=invoice_payment(card=card(**change)), headers=auth
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert "5678" not in response.text  # the problem never repeats the card
    assert await _state(sessionmaker, fakepay) == before


def test_a_card_expiring_this_month_is_still_good() -> None:
    good = CardIn.model_validate(card(number=SEED_CARD_SPACED, expiry=_this_month(), cvv="123"))

    assert good.details().masked_number == "123456********5678"
    assert "5656" not in repr(good)
    assert "123" not in repr(good.cvv)


PAYMENT_CASES: list[tuple[dict[str, Any], str]] = [
    ({"amount": "-5.00"}, "amount"),
    ({"amount": "0"}, "amount"),
    ({"amount": "0.00"}, "amount"),
    ({"amount": "1.001"}, "amount"),
    ({"amount": "1e3"}, "amount"),
    ({"amount": "NaN"}, "amount"),
    ({"amount": "12345678901.00"}, "amount"),
    ({"amount": 99.99}, "amount"),
    ({"amount": None}, "amount"),
    ({"currency": "usd"}, "currency"),
    ({"currency": "DOLLARS"}, "currency"),
    ({"currency": 840}, "currency"),
    ({"invoice_id": "not-a-uuid"}, "invoice_id"),
    ({"invoice_id": 42}, "invoice_id"),
    ({"description": ""}, "description"),
    ({"description": "x" * 501}, "description"),
    ({"card": "1234567812345678"}, "card"),
    ({"card": None}, "card"),
    ({"status": "succeeded"}, "status"),
]


@pytest.mark.parametrize(("change", "field"), PAYMENT_CASES, ids=[str(c) for c, _ in PAYMENT_CASES])
async def test_a_bad_invoice_payment_is_refused_and_changes_nothing(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
    change: dict[str, Any],
    field: str,
) -> None:
    before = await _state(sessionmaker, fakepay)

    response = await api.post(
        "/internal/invoice-payments", json=invoice_payment(**change), headers=auth
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await _state(sessionmaker, fakepay) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": "-1.00"}, "amount"),
        ({"amount": "1.999"}, "amount"),
        ({"amount": "10000.01"}, "amount"),  # above the top-up limit
        ({"currency": "XYZ"}, "currency"),  # well formed, but no wallet is kept in it
        ({"currency": "us"}, "currency"),
    ],
    ids=str,
)
async def test_a_bad_top_up_is_refused_and_changes_nothing(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
    change: dict[str, Any],
    field: str,
) -> None:
    before = await _state(sessionmaker, fakepay)

    response = await top_up(api, auth, **change)

    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await _state(sessionmaker, fakepay) == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/internal/wallet/debits", {"amount": "-1.00"}, "amount"),
        ("/internal/wallet/debits", {"amount": "0.001"}, "amount"),
        ("/internal/wallet/debits", {"reference": ""}, "reference"),
        ("/internal/wallet/debits", {"reference": "a b"}, "reference"),
        ("/internal/wallet/debits", {"reference": "r" * 101}, "reference"),
        ("/internal/wallet/debits", {"currency": "EURO"}, "currency"),
        ("/internal/wallet/debits", {"description": ""}, "description"),
        ("/internal/wallet/refunds", {"reference": None}, "reference"),
        ("/internal/wallet/refunds", {"reference": "ok", "amount": "1.00"}, "amount"),
    ],
    ids=str,
)
async def test_bad_debits_and_refunds_are_refused(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    before = await _state(sessionmaker, fakepay)
    if path.endswith("debits"):
        body = {
            "reference": "send-1",
            "amount": "1.00",
            "currency": "USD",
            "description": "Invoice sent",
            **body,
        }

    response = await api.post(path, json=body, headers=auth)

    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await _state(sessionmaker, fakepay) == before


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b"null", b'"text"', b'{"invoice_id": }', b"\xff\xfe{}"],
    ids=["truncated", "array", "null", "string", "broken value", "not utf-8"],
)
@pytest.mark.parametrize(
    "path", ["/internal/invoice-payments", "/api/wallet/topups", "/internal/wallet/debits"]
)
async def test_malformed_json_is_refused(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
    path: str,
    body: bytes,
) -> None:
    before = await _state(sessionmaker, fakepay)

    response = await api.post(
        path, content=body, headers={**auth, "content-type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await _state(sessionmaker, fakepay) == before


async def test_a_huge_body_is_refused_before_it_is_read(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    before = await _state(sessionmaker, fakepay)
    body = b'{"description": "' + b"x" * (2 * 1024 * 1024) + b'"}'

    response = await api.post(
        "/internal/invoice-payments",
        content=body,
        headers={**auth, "content-type": "application/json"},
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert await _state(sessionmaker, fakepay) == before


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/payments/not-a-uuid", {}, "payment_id"),
        ("/api/payments", {"limit": "0"}, "limit"),
        ("/api/payments", {"limit": "101"}, "limit"),
        ("/api/payments", {"limit": "ten"}, "limit"),
        ("/api/payments", {"cursor": "forged.cursor"}, "cursor"),
        ("/api/payments", {"colour": "red"}, "colour"),
        ("/api/wallet/transactions", {"cursor": "eyJxIjoid2FsbGV0X2VudHJpZXMifQ.AAAA"}, "cursor"),
        ("/api/wallet/transactions", {"limit": "-1"}, "limit"),
    ],
    ids=str,
)
async def test_bad_reads_are_named(
    api: httpx.AsyncClient, auth: dict[str, str], path: str, params: dict[str, str], field: str
) -> None:
    response = await api.get(path, params=params, headers=auth)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


async def _state(
    sessionmaker: async_sessionmaker[AsyncSession], fakepay: FakePayControl
) -> tuple[int, ...]:
    """Row counts of every table a request could change, and the provider's charges."""
    counts = []
    async with sessionmaker() as session:
        for model in (Payment, WalletAccount, WalletEntry, OutboxMessage):
            counts.append(await session.scalar(select(func.count()).select_from(model)) or 0)
    return (*counts, len(fakepay.ledger()))
