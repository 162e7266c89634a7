"""The owner's endpoints: payments and wallet, newest first in signed cursor pages, each
owner seeing only their own."""

import io
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from fastapi import FastAPI

from common.testing.identity import TestIssuer
from simulators.testing import FakePayControl

from .factories import SEED_CARD_SPACED, card, debit, pay_invoice, top_up


async def test_payments_are_listed_newest_first_in_pages(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    paid = [(await pay_invoice(api, auth)).json()["id"] for _ in range(3)]
    paid.append((await top_up(api, auth)).json()["payment"]["id"])

    first = (await api.get("/api/payments", params={"limit": 3}, headers=auth)).json()
    second = (
        await api.get(
            "/api/payments", params={"limit": 3, "cursor": first["next_cursor"]}, headers=auth
        )
    ).json()

    listed = [p["id"] for p in first["items"] + second["items"]]
    assert listed == list(reversed(paid))
    assert second["next_cursor"] is None
    assert [p["kind"] for p in first["items"]] == ["topup", "invoice", "invoice"]


async def test_another_owners_payments_and_wallet_are_invisible(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    test_issuer: TestIssuer,
    fakepay: FakePayControl,
) -> None:
    paid = (await pay_invoice(api, auth)).json()
    await top_up(api, auth, "20.00")
    await debit(api, auth, "1.00", reference="send-mine")
    stranger = test_issuer.headers(uuid.uuid4())

    read = await api.get(f"/api/payments/{paid['id']}", headers=stranger)
    missing = await api.get(f"/api/payments/{uuid.uuid4()}", headers=stranger)
    listed = await api.get("/api/payments", headers=stranger)
    wallet = await api.get("/api/wallet", headers=stranger)
    history = await api.get("/api/wallet/transactions", headers=stranger)
    refund = await api.post(
        "/internal/wallet/refunds", json={"reference": "send-mine"}, headers=stranger
    )

    assert read.status_code == 404
    assert read.json() == missing.json()  # the same answer as for an id nobody has
    assert read.headers["content-type"] == "application/problem+json"
    assert listed.json() == {"items": [], "next_cursor": None}
    assert wallet.json() == {"balances": []}
    assert history.json() == {"items": [], "next_cursor": None}
    assert refund.status_code == 404


async def test_a_cursor_is_bound_to_its_listing(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    await top_up(api, auth, "5.00")
    await top_up(api, auth, "5.00")
    wallet_page = (await api.get("/api/wallet/transactions?limit=1", headers=auth)).json()
    payments_page = (await api.get("/api/payments?limit=1", headers=auth)).json()

    crossed = [
        await api.get("/api/payments", params={"cursor": wallet_page["next_cursor"]}, headers=auth),
        await api.get(
            "/api/wallet/transactions",
            params={"cursor": payments_page["next_cursor"]},
            headers=auth,
        ),
    ]

    for response in crossed:
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "cursor"


async def test_every_endpoint_wants_a_token(api: httpx.AsyncClient) -> None:
    calls = [
        ("GET", "/api/payments"),
        ("GET", f"/api/payments/{uuid.uuid4()}"),
        ("GET", "/api/wallet"),
        ("GET", "/api/wallet/transactions"),
        ("POST", "/api/wallet/topups"),
        ("POST", "/internal/invoice-payments"),
        ("POST", "/internal/wallet/debits"),
        ("POST", "/internal/wallet/refunds"),
    ]

    for method, path in calls:
        response = await api.request(method, path, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


class BrokenProvider:
    """A provider with a bug: every call raises something nobody planned for."""

    name = "broken"

    async def charge(self, request: object) -> object:
        raise RuntimeError("a bug in the provider adapter")

    async def lookup(self, transaction_id: str) -> object:
        raise RuntimeError("a bug in the provider adapter")


@contextmanager
def captured_log() -> Iterator[io.StringIO]:
    """Everything logged meanwhile, rendered as the service renders it."""
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


async def test_an_unexpected_failure_of_a_card_request_logs_no_traceback_and_no_card(
    api: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    working = app.state.provider
    app.state.provider = BrokenProvider()
    try:
        with captured_log() as log:
            response = await pay_invoice(api, auth, card=card(number=SEED_CARD_SPACED, cvv="737"))
    finally:
        app.state.provider = working

    assert response.status_code == 503
    assert response.json()["code"] == "payment_not_completed"
    assert "retry-after" in response.headers
    logged = log.getvalue()
    assert "card_request_failed" in logged
    assert "RuntimeError" in logged
    assert SEED_CARD_SPACED not in logged
    assert SEED_CARD_SPACED.replace(" ", "") not in logged
    assert "Traceback" not in logged
