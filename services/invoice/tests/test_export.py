"""GET /api/invoices/export.csv: the listing's rows, every page of them, as CSV; the owner's
only; read in keyset pages; no cell a spreadsheet would run as a formula."""

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.testing.identity import TestIssuer
from invoice.models import Invoice
from invoice.service import EXPORT_COLUMNS, EXPORT_PAGE_ROWS, today_utc

from .factories import create_client, create_invoice


def read_csv(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff"), "the byte order mark that spreadsheets read UTF-8 by"
    rows = list(csv.reader(io.StringIO(text[1:], newline="")))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    return [dict(zip(EXPORT_COLUMNS, row, strict=True)) for row in rows[1:]]


async def listed_numbers(
    api: httpx.AsyncClient, auth: dict[str, str], params: dict[str, str]
) -> list[str]:
    """The invoice numbers the listing shows for the same query, page after page."""
    numbers: list[str] = []
    cursor: str | None = None
    while True:
        page_params = {**params, "limit": "100", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/invoices", params=page_params, headers=auth)).json()
        numbers += [item["number"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return numbers


@pytest.fixture
async def invoices(api: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    """Twelve invoices over three clients and three due dates, two of them void."""
    clients = [
        await create_client(api, auth, name=name, email=f"c{i}@example.com")
        for i, name in enumerate(["Acme", "Acme Holdings", "Bravo"])
    ]
    made = []
    for i in range(12):
        due = (date(2031, 1, 1) + timedelta(days=30 * (i % 3))).isoformat()
        made.append(
            await create_invoice(
                api, auth, clients[i % 3]["id"], due_date=due, amount=f"{100 + i}.50"
            )
        )
    for invoice in made[:2]:
        response = await api.post(f"/api/invoices/{invoice['id']}/void", headers=auth)
        assert response.status_code == 200, response.text
    return made


EXPORT_QUERIES = [
    {},
    {"client_name": "acme"},
    {"client_name": "Acme H", "order_by": "client_name", "order_dir": "asc"},
    {"status": "void"},
    {"status": "pending", "due_date": "2031-01-31", "order_by": "status"},
    {"due_date": "2031-03-02", "order_by": "client_name", "order_dir": "desc"},
]


@pytest.mark.parametrize("params", EXPORT_QUERIES, ids=[str(q) for q in EXPORT_QUERIES])
async def test_the_export_holds_the_listings_rows_in_its_order(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    invoices: list[dict[str, Any]],
    params: dict[str, str],
) -> None:
    response = await api.get("/api/invoices/export.csv", params=params, headers=auth)

    rows = read_csv(response)
    assert [row["number"] for row in rows] == await listed_numbers(api, auth, params)
    assert rows, "each query matches something, so the comparison shows the filter works"
    if "status" in params:
        assert {row["status"] for row in rows} == {params["status"]}


async def test_a_row_holds_the_invoice_as_the_api_shows_it(
    api: httpx.AsyncClient, auth: dict[str, str], invoices: list[dict[str, Any]]
) -> None:
    response = await api.get("/api/invoices/export.csv", headers=auth)

    rows = {row["id"]: row for row in read_csv(response)}
    assert len(rows) == len(invoices)
    for invoice in invoices:
        shown = (await api.get(f"/api/invoices/{invoice['id']}", headers=auth)).json()
        assert rows[invoice["id"]] == {
            "number": shown["number"],
            "client_name": shown["client_name"],
            "description": shown["description"],
            "amount": shown["amount"],
            "currency": shown["currency"],
            "status": shown["status"],
            "due_date": shown["due_date"],
            "created_at": shown["created_at"],
            "source": "",
            "external_number": "",
            "id": shown["id"],
        }


async def test_the_reply_is_a_dated_attachment(
    api: httpx.AsyncClient, auth: dict[str, str], invoices: list[dict[str, Any]]
) -> None:
    response = await api.get("/api/invoices/export.csv", headers=auth)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f"attachment; filename=invoices-{today_utc().isoformat()}.csv"
    )
    assert response.headers["cache-control"] == "private, no-store"


async def test_another_owners_invoices_are_never_exported(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    invoices: list[dict[str, Any]],
    test_issuer: TestIssuer,
) -> None:
    stranger = test_issuer.headers(uuid.uuid4())
    theirs = await create_client(api, stranger, name="Acme")
    await create_invoice(api, stranger, theirs["id"], due_date="2031-01-01")

    mine = read_csv(await api.get("/api/invoices/export.csv", headers=auth))
    their_rows = read_csv(await api.get("/api/invoices/export.csv", headers=stranger))
    nobodys = read_csv(
        await api.get("/api/invoices/export.csv", headers=test_issuer.headers(uuid.uuid4()))
    )

    assert {row["id"] for row in mine} == {invoice["id"] for invoice in invoices}
    assert len(their_rows) == 1
    assert their_rows[0]["id"] not in {row["id"] for row in mine}
    assert nobodys == []


async def test_the_export_needs_a_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/invoices/export.csv")

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_cells_that_would_run_as_formulas_are_written_as_text(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    names = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "Plain"]
    for name in names:
        client = await create_client(api, auth, name=name)
        await create_invoice(api, auth, client["id"], description="=cmd|' /C calc'!A0")

    rows = read_csv(
        await api.get("/api/invoices/export.csv", params={"order_by": "client_name"}, headers=auth)
    )

    assert sorted(row["client_name"] for row in rows) == sorted(
        ['\'=HYPERLINK("http://evil.example","x")', "'+1+1", "'-2+3", "'@SUM(A1)", "Plain"]
    )
    assert {row["description"] for row in rows} == {"'=cmd|' /C calc'!A0"}


BAD_EXPORT_QUERIES = [
    ({"status": "overdue"}, "status"),
    ({"due_date": "31/01/2030"}, "due_date"),
    ({"order_by": "amount"}, "order_by"),
    ({"order_dir": "sideways"}, "order_dir"),
    ({"client_name": ""}, "client_name"),
    # The export has no pages: a page's parameters are refused, not ignored.
    ({"limit": "10"}, "limit"),
    ({"cursor": "abc"}, "cursor"),
]


@pytest.mark.parametrize(
    ("params", "field"), BAD_EXPORT_QUERIES, ids=[str(p) for p, _ in BAD_EXPORT_QUERIES]
)
async def test_bad_filters_are_named(
    api: httpx.AsyncClient, auth: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await api.get("/api/invoices/export.csv", params=params, headers=auth)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


@pytest.fixture
def read_statements(app: FastAPI) -> Iterator[list[tuple[str, Any]]]:
    """The SQL and parameters of every statement the read engine runs while the test does."""
    engine: AsyncEngine = app.state.read_engine
    seen: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        seen.append((args[2], args[3]))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_a_large_export_is_read_in_keyset_pages(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    read_statements: list[tuple[str, Any]],
) -> None:
    """Two and a half pages of invoices, put straight into the schema: the file has every
    one, in order, and no query asked for more than a page."""
    count = EXPORT_PAGE_ROWS * 2 + EXPORT_PAGE_ROWS // 2
    client = await create_client(api, auth, name="Bulk Buyer")
    async with sessionmaker() as session, session.begin():
        await session.execute(
            insert(Invoice),
            [
                {
                    "owner_id": owner,
                    "client_id": client["id"],
                    "number": f"BULK-{n:06d}",
                    "client_name": "Bulk Buyer",
                    "description": f"Item {n}",
                    "amount": Decimal("10.00"),
                    "currency": "USD",
                    "status": "pending",
                    # Many invoices share each due date: the pages' edges fall inside ties.
                    "due_date": date(2031, 1, 1) + timedelta(days=n % 7),
                }
                for n in range(count)
            ],
        )

    response = await api.get("/api/invoices/export.csv", headers=auth)

    rows = read_csv(response)
    assert len(rows) == count
    assert len({row["id"] for row in rows}) == count
    assert rows == sorted(rows, key=lambda r: (r["due_date"], r["id"]), reverse=True)
    pages = [(sql, params) for sql, params in read_statements if "FROM invoices" in sql]
    assert len(pages) == 3
    # The page size is the statement's last value, its LIMIT.
    assert all(sql.rstrip().endswith("LIMIT %s") for sql, _ in pages)
    assert [params[-1] for _, params in pages] == [EXPORT_PAGE_ROWS] * 3
