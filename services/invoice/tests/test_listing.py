"""GET /api/invoices: every filter and sort combination returns exactly the rows a plain
Python sort of the same data gives, page after page, and MySQL serves each from an index."""

import itertools
import random
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.testing.identity import TestIssuer
from invoice.models import Invoice

from .factories import create_client, create_invoice

# Names chosen for ties and traps: equal but for case, a shared prefix, LIKE wildcards.
CLIENT_NAMES = ["Acme", "acme", "Acme Holdings", "Beta_Works", "Bravo", "zulu%"]
DUE_DATES = [date(2030, 1, 31), date(2030, 2, 28), date(2030, 3, 31)]
STATUSES = ["pending", "past_due", "paid", "void"]
PAGE_SIZE = 4

FILTER_SETS = [
    dict(zip(("client_name", "status", "due_date"), chosen, strict=True))
    for chosen in itertools.product(["ac", None], ["pending", None], ["2030-02-28", None])
]
COMBINATIONS = [
    ({k: v for k, v in filters.items() if v is not None}, order_by, order_dir)
    for filters in FILTER_SETS
    for order_by in ("due_date", "status", "client_name")
    for order_dir in ("asc", "desc")
]


@pytest.fixture(scope="module")
def lister() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture(scope="module")
async def invoices(
    app: FastAPI,
    test_issuer: TestIssuer,
    lister: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> list[dict[str, Any]]:
    """Sixty invoices of one owner over six clients, three due dates and four statuses."""
    auth = test_issuer.headers(lister)
    rng = random.Random(20301)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://invoice.test") as api:
        clients = [await create_client(api, auth, name=name) for name in CLIENT_NAMES]
        created = [
            await create_invoice(
                api, auth, rng.choice(clients)["id"], due_date=rng.choice(DUE_DATES).isoformat()
            )
            for _ in range(60)
        ]
    async with sessionmaker() as session, session.begin():
        for invoice in created:
            invoice["status"] = rng.choice(STATUSES)
            await session.execute(
                update(Invoice)
                .where(Invoice.id == uuid.UUID(invoice["id"]))
                .values(status=invoice["status"])
            )
    return created


def expected_order(
    invoices: list[dict[str, Any]], filters: dict[str, str], order_by: str, order_dir: str
) -> list[str]:
    """The same listing computed in Python: the database collation ignores case."""
    rows = [
        i
        for i in invoices
        if i["client_name"].casefold().startswith(filters.get("client_name", "").casefold())
        and i["status"] == filters.get("status", i["status"])
        and i["due_date"] == filters.get("due_date", i["due_date"])
    ]
    sort_key = {
        "due_date": lambda i: (i["due_date"], i["client_name"].casefold()),
        "status": lambda i: (i["status"], i["due_date"], i["client_name"].casefold()),
        "client_name": lambda i: (i["client_name"].casefold(), i["due_date"]),
    }[order_by]
    rows.sort(key=lambda i: (*sort_key(i), uuid.UUID(i["id"])), reverse=order_dir == "desc")
    return [i["id"] for i in rows]


async def walk(
    api: httpx.AsyncClient, auth: dict[str, str], params: dict[str, Any]
) -> Iterator[list[dict[str, Any]]]:
    pages = []
    cursor = None
    while True:
        query = {**params, "limit": PAGE_SIZE, **({"cursor": cursor} if cursor else {})}
        response = await api.get("/api/invoices", params=query, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return iter(pages)
        assert len(pages) < 100, "the cursor does not advance"


@pytest.mark.parametrize(("filters", "order_by", "order_dir"), COMBINATIONS)
async def test_pages_follow_the_sort_without_gaps_or_repeats(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    lister: uuid.UUID,
    invoices: list[dict[str, Any]],
    filters: dict[str, str],
    order_by: str,
    order_dir: str,
) -> None:
    params = {**filters, "order_by": order_by, "order_dir": order_dir}

    pages = list(await walk(api, test_issuer.headers(lister), params))

    listed = [item["id"] for page in pages for item in page]
    expected = expected_order(invoices, filters, order_by, order_dir)
    assert expected, "every combination should match some rows"
    assert listed == expected
    assert all(len(page) == PAGE_SIZE for page in pages[:-1])


async def test_the_status_filter_accepts_past_due_spelled_with_a_space(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    lister: uuid.UUID,
    invoices: list[dict[str, Any]],
) -> None:
    response = await api.get(
        "/api/invoices",
        params={"status": "past due", "limit": 100},
        headers=test_issuer.headers(lister),
    )

    listed = {item["id"] for item in response.json()["items"]}
    assert listed == {i["id"] for i in invoices if i["status"] == "past_due"}


@pytest.fixture
def listing_statements(app: FastAPI) -> Iterator[list[tuple[str, Any]]]:
    """The listing SQL the API sends, with its parameters, as the driver receives them."""
    engine: AsyncEngine = app.state.read_engine
    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM invoices" in statement and "ORDER BY" in statement:
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", capture)


@pytest.mark.parametrize(("filters", "order_by", "order_dir"), COMBINATIONS)
async def test_each_listing_reads_an_index_in_order_without_a_filesort(
    api: httpx.AsyncClient,
    app: FastAPI,
    test_issuer: TestIssuer,
    lister: uuid.UUID,
    invoices: list[dict[str, Any]],
    listing_statements: list[tuple[str, Any]],
    filters: dict[str, str],
    order_by: str,
    order_dir: str,
) -> None:
    params = {**filters, "order_by": order_by, "order_dir": order_dir}
    first = await api.get(
        "/api/invoices", params={**params, "limit": 1}, headers=test_issuer.headers(lister)
    )
    await api.get(
        "/api/invoices",
        params={**params, "limit": 1, "cursor": first.json()["next_cursor"]},
        headers=test_issuer.headers(lister),
    )
    engine: AsyncEngine = app.state.engine

    sent = list(listing_statements)

    plans = []
    async with engine.connect() as connection:
        for statement, parameters in sent:
            result = await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            plans.append([dict(row._mapping) for row in result])

    assert len(plans) == 2, "a first page and a page after the cursor"
    for plan in plans:
        assert len(plan) == 1, plan
        assert plan[0]["key"].startswith("ix_invoices_owner_"), plan
        assert "filesort" not in (plan[0]["Extra"] or ""), plan
