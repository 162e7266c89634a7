"""Bad input: a 4xx problem+json that names the field, never a 500, and nothing changes."""

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from invoice.models import Client, Invoice, OutboxMessage

from .factories import create_client, create_invoice

LIST_CASES = [
    ({"status": "overdue"}, "status"),
    ({"status": "PENDING"}, "status"),
    ({"due_date": "31/01/2030"}, "due_date"),
    ({"due_date": "2030-02-30"}, "due_date"),
    ({"due_date": "2030-01-31T00:00:00"}, "due_date"),
    ({"due_date": "1893456000"}, "due_date"),
    ({"order_by": "amount"}, "order_by"),
    ({"order_by": "id; DROP TABLE invoices"}, "order_by"),
    ({"order_dir": "sideways"}, "order_dir"),
    ({"limit": "1000000000"}, "limit"),
    ({"limit": "0"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"cursor": "eyJxIjoiaW52b2ljZXMifQ.AAAAAAAAAAAAAAAAAAAAAA"}, "cursor"),
    ({"cursor": "not a cursor"}, "cursor"),
    ({"client_name": ""}, "client_name"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("params", "field"), LIST_CASES, ids=[str(p) for p, _ in LIST_CASES])
async def test_bad_listing_parameters_are_named(
    api: httpx.AsyncClient, auth: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await api.get("/api/invoices", params=params, headers=auth)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_a_cursor_from_another_query_is_refused(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = await create_client(api, auth)
    for _ in range(3):
        await create_invoice(api, auth, client["id"])
    page = (await api.get("/api/invoices", params={"limit": 1}, headers=auth)).json()

    response = await api.get(
        "/api/invoices",
        params={"limit": 1, "order_by": "status", "cursor": page["next_cursor"]},
        headers=auth,
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "cursor"


CREATE_CASES = [
    ({"amount": "-5.00"}, "amount"),
    ({"amount": "0"}, "amount"),
    ({"amount": "1.001"}, "amount"),
    ({"amount": "1e400"}, "amount"),
    ({"amount": "NaN"}, "amount"),
    ({"amount": "1e3"}, "amount"),
    ({"amount": " 5 "}, "amount"),
    ({"amount": "\u0661\u0662"}, "amount"),  # "12" in Arabic-Indic digits
    ({"amount": 10.5}, "amount"),  # a JSON number: the platform API takes text only
    ({"currency": "dollars"}, "currency"),
    ({"due_date": "tomorrow"}, "due_date"),
    ({"description": ""}, "description"),
    ({"description": "x" * 501}, "description"),
    ({"client_id": 0}, "client_id"),
    ({"client_id": 2**40}, "client_id"),
    ({"status": "paid"}, "status"),
]


@pytest.mark.parametrize(("change", "field"), CREATE_CASES, ids=[repr(c) for c, _ in CREATE_CASES])
async def test_bad_invoices_are_refused_and_nothing_is_written(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    change: dict[str, object],
    field: str,
) -> None:
    client = await create_client(api, auth)
    body = {"client_id": client["id"], "description": "Work", "amount": "10.00", **change}
    before = await _row_counts(sessionmaker)

    response = await api.post("/api/invoices", json=body, headers=auth)

    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await _row_counts(sessionmaker) == before


async def test_a_ten_megabyte_body_is_refused_before_it_is_read(
    api: httpx.AsyncClient, auth: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    before = await _row_counts(sessionmaker)
    body = b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'", "email": "a@example.com"}'

    response = await api.post(
        "/api/clients", content=body, headers={**auth, "content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert await _row_counts(sessionmaker) == before


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"name": "A"}', b'{"name": "A", "email": "not-an-email"}'],
    ids=["truncated", "array", "missing email", "bad email"],
)
async def test_malformed_client_bodies_are_refused(
    api: httpx.AsyncClient, auth: dict[str, str], body: bytes
) -> None:
    response = await api.post(
        "/api/clients", content=body, headers={**auth, "content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", ["/api/invoices/not-a-uuid", "/invoice/123", "/api/clients/x"])
async def test_malformed_ids_are_named(
    api: httpx.AsyncClient, auth: dict[str, str], path: str
) -> None:
    response = await api.get(path, headers=auth)

    assert response.status_code == 422
    assert response.json()["errors"][0]["in"] == "path"


async def _row_counts(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, ...]:
    counts = []
    async with sessionmaker() as session:
        for model in (Client, Invoice, OutboxMessage):
            counts.append(await session.scalar(select(func.count()).select_from(model)) or 0)
    return tuple(counts)


SEED_AMOUNTS = ["199.99", 1.234, True, -1, 0, 1e10, None]


@pytest.mark.parametrize("amount", SEED_AMOUNTS, ids=[repr(a) for a in SEED_AMOUNTS])
async def test_seed_amounts_are_json_numbers_to_the_cent(
    api: httpx.AsyncClient, auth: dict[str, str], amount: object
) -> None:
    client = await create_client(api, auth)

    response = await api.post(
        "/invoice",
        json={"jobDescription": "Work", "amount": amount, "customerId": client["id"]},
        headers=auth,
    )

    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["amount"]
