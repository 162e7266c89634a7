"""The read path as the database sees it: one round trip for a read that needs one query, no
ping before each use, and no client error when the server drops the connections.

The app here reaches MariaDB through a loopback proxy (common.testing.mysql_proxy) that
counts every command its connections send and can cut them all at once.
"""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

import common.db
from common.db import SessionDep
from common.testing.mysql_proxy import COM_PING, MysqlProxy
from invoice.config import InvoiceSettings
from invoice.main import create_app

from .factories import create_client, create_invoice


@pytest.fixture
async def proxied_app(
    settings: InvoiceSettings, invoice_database: str, mysql_proxy: MysqlProxy
) -> AsyncIterator[FastAPI]:
    database = invoice_database.rsplit("/", 1)[1]
    proxied = settings.model_copy(update={"database_url": SecretStr(mysql_proxy.url(database))})
    application = create_app(proxied)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def proxied_api(proxied_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=proxied_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://invoice.test") as client:
        yield client


@pytest.fixture
async def invoice(api: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, Any]:
    """One invoice of the test's owner, created through the plain app."""
    client = await create_client(api, auth)
    return await create_invoice(api, auth, client["id"])


def listing_url() -> str:
    return "/api/invoices?status=pending&order_by=due_date&order_dir=desc&limit=10"


async def commands_of(
    mysql_proxy: MysqlProxy, api: httpx.AsyncClient, auth: dict[str, str], url: str
) -> list[str]:
    """What one request sends to the database, once the pool holds a warm connection."""
    warm = await api.get(url, headers=auth)
    assert warm.status_code == 200, warm.text
    mysql_proxy.commands.clear()
    response = await api.get(url, headers=auth)
    assert response.status_code == 200, response.text
    return mysql_proxy.queries()


@pytest.mark.parametrize(
    "url",
    [listing_url(), "/api/invoices/{id}", "/invoice/{id}", "/invoices?invoiceStatus=PENDING"],
    ids=["list", "get", "seed-get", "seed-list"],
)
async def test_a_read_is_one_round_trip(
    mysql_proxy: MysqlProxy,
    proxied_api: httpx.AsyncClient,
    auth: dict[str, str],
    invoice: dict[str, Any],
    url: str,
) -> None:
    sent = await commands_of(mysql_proxy, proxied_api, auth, url.format(id=invoice["id"]))

    assert len(sent) == 1, sent  # no ping before it, no ROLLBACK or COMMIT after it
    assert sent[0].lstrip().upper().startswith("SELECT"), sent


async def test_a_write_is_its_statements_and_one_commit(
    mysql_proxy: MysqlProxy, proxied_api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await create_client(proxied_api, auth)
    mysql_proxy.commands.clear()

    await create_client(proxied_api, auth, name="Second Client")

    sent = mysql_proxy.queries()
    assert sent[0].startswith("INSERT INTO clients"), sent
    assert sent[-1] == "COMMIT", sent
    assert "PING" not in sent, sent
    assert "ROLLBACK" not in sent, sent


async def test_a_connection_idle_for_a_while_is_pinged_before_use(
    mysql_proxy: MysqlProxy,
    proxied_api: httpx.AsyncClient,
    auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(common.db, "IDLE_BEFORE_PING_SECONDS", 0.3)
    assert len(await commands_of(mysql_proxy, proxied_api, auth, listing_url())) == 1
    await asyncio.sleep(0.5)
    mysql_proxy.commands.clear()

    response = await proxied_api.get(listing_url(), headers=auth)

    assert response.status_code == 200
    assert [c.kind for c in mysql_proxy.commands][:1] == [COM_PING], mysql_proxy.queries()
    assert len(mysql_proxy.commands) == 2, mysql_proxy.queries()


async def kill_connections(engine: AsyncEngine, ports: list[int]) -> int:
    """KILL CONNECTION, from the server's side, of the connections from these local ports."""
    hosts = [f"127.0.0.1:{port}" for port in ports]
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql(
            "SELECT ID, HOST FROM information_schema.PROCESSLIST"
        )
        ids = [row[0] for row in rows if row[1] in hosts]
        for connection_id in ids:
            await connection.exec_driver_sql(f"KILL CONNECTION {int(connection_id)}")
    return len(ids)


async def test_a_read_on_a_connection_killed_by_the_server_still_answers(
    mysql_proxy: MysqlProxy,
    proxied_api: httpx.AsyncClient,
    app: FastAPI,
    auth: dict[str, str],
    invoice: dict[str, Any],
) -> None:
    assert len(await commands_of(mysql_proxy, proxied_api, auth, listing_url())) == 1
    opened = mysql_proxy.connections_opened

    assert await kill_connections(app.state.engine, mysql_proxy.upstream_ports()) >= 1
    response = await proxied_api.get(listing_url(), headers=auth)

    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [invoice["id"]]
    assert mysql_proxy.connections_opened > opened, "the read was answered on a new connection"


async def test_reads_in_flight_when_every_connection_is_cut_all_answer(
    mysql_proxy: MysqlProxy,
    proxied_api: httpx.AsyncClient,
    auth: dict[str, str],
    invoice: dict[str, Any],
) -> None:
    """A server restart, as the service sees it: every pooled connection closes at once.
    (The shared test server itself is not restarted; the proxy cuts the connections.)"""
    urls = [listing_url(), f"/api/invoices/{invoice['id']}", f"/invoice/{invoice['id']}"] * 3
    warm = await asyncio.gather(*(proxied_api.get(url, headers=auth) for url in urls))
    assert {r.status_code for r in warm} == {200}
    assert len(mysql_proxy.upstream_ports()) > 1, "several pooled connections to cut"

    await mysql_proxy.drop_connections()
    answers = await asyncio.gather(*(proxied_api.get(url, headers=auth) for url in urls))

    assert [r.status_code for r in answers] == [200] * len(urls), [r.text for r in answers]


async def test_every_pooled_connection_killed_by_the_server_costs_no_read_an_error(
    mysql_proxy: MysqlProxy,
    proxied_api: httpx.AsyncClient,
    app: FastAPI,
    auth: dict[str, str],
    invoice: dict[str, Any],
) -> None:
    urls = [listing_url(), f"/api/invoices/{invoice['id']}", f"/invoice/{invoice['id']}"] * 3
    warm = await asyncio.gather(*(proxied_api.get(url, headers=auth) for url in urls))
    assert {r.status_code for r in warm} == {200}

    assert await kill_connections(app.state.engine, mysql_proxy.upstream_ports()) > 1
    answers = await asyncio.gather(*(proxied_api.get(url, headers=auth) for url in urls))

    assert [r.status_code for r in answers] == [200] * len(urls), [r.text for r in answers]


async def test_the_read_engine_refuses_a_write(app: FastAPI) -> None:
    """Reads run in autocommit, where a write would be kept at once: the server refuses it."""
    async with app.state.read_sessionmaker() as session:
        with pytest.raises(DBAPIError, match="READ ONLY"):
            await session.execute(text("UPDATE clients SET name = name WHERE id = 0"))


async def test_the_health_check_stays_up_when_its_connection_was_cut(
    mysql_proxy: MysqlProxy, proxied_api: httpx.AsyncClient
) -> None:
    assert (await proxied_api.get("/health-check")).json() == {"status": "UP"}

    await mysql_proxy.drop_connections()
    answer = await proxied_api.get("/health-check")

    assert (answer.status_code, answer.json()) == (200, {"status": "UP"})


async def test_a_get_that_writes_is_not_run_again(
    mysql_proxy: MysqlProxy, proxied_app: FastAPI, proxied_api: httpx.AsyncClient, app: FastAPI
) -> None:
    """A GET may write (a sign-in's callback does): only reads are run again."""
    runs = []

    async def counting_write(session: SessionDep) -> dict[str, str]:
        runs.append(1)
        await session.execute(text("SELECT 1"))
        return {"ok": "yes"}

    proxied_app.get("/_test/a-get-that-writes")(counting_write)
    assert (await proxied_api.get("/_test/a-get-that-writes")).status_code == 200
    runs.clear()

    assert await kill_connections(app.state.engine, mysql_proxy.upstream_ports()) >= 1
    with pytest.raises(DBAPIError):
        await proxied_api.get("/_test/a-get-that-writes")

    assert len(runs) == 1
