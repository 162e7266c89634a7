"""Errors as problem+json: a database that cannot be reached is a 503 to retry, not a 500."""

from collections.abc import AsyncIterator

import asyncmy.errors
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from common.db import create_engine
from common.errors import PROBLEM_JSON, database_unavailable, install_error_handlers
from common.testing.fault_proxy import FaultProxy
from common.testing.servers import MysqlServer


@pytest.fixture
async def database_proxy(mysql_server: MysqlServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(mysql_server.host, mysql_server.port) as proxy:
        yield proxy


@pytest.fixture
async def api(
    mysql_server: MysqlServer, database_proxy: FaultProxy
) -> AsyncIterator[httpx.AsyncClient]:
    secret = f":{mysql_server.password}" if mysql_server.password else ""
    engine = create_engine(
        f"mysql+asyncmy://{mysql_server.user}{secret}@127.0.0.1:{database_proxy.port}/",
        pool_size=1,
    )
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/write")
    async def write() -> dict[str, int]:
        async with engine.begin() as connection:
            return {"value": (await connection.execute(text("SELECT 1"))).scalar_one()}

    @app.post("/broken")
    async def broken() -> None:
        raise IntegrityError("INSERT ...", {}, Exception("Duplicate entry"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client
    await engine.dispose()


async def test_a_database_that_refuses_connections_answers_503_with_retry_after(
    api: httpx.AsyncClient, database_proxy: FaultProxy
) -> None:
    await database_proxy.down()

    answer = await api.post("/write")

    assert answer.status_code == 503
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.json()["title"] == "Service unavailable"


async def test_a_connection_reset_mid_request_answers_503_and_the_retry_works(
    api: httpx.AsyncClient, database_proxy: FaultProxy
) -> None:
    assert (await api.post("/write")).json() == {"value": 1}
    await database_proxy.reset_all()  # the pooled connection dies under the next request

    lost = await api.post("/write")
    again = await api.post("/write")

    assert lost.status_code == 503
    assert again.status_code == 200


async def test_a_broken_statement_is_still_a_500(api: httpx.AsyncClient) -> None:
    answer = await api.post("/broken")
    assert answer.status_code == 500
    assert "Duplicate" not in answer.text


def test_the_drivers_own_error_of_a_server_gone_away_is_an_outage() -> None:
    """The drill's user worker exited when MySQL went away just as its outbox relay set up a
    connection: SQLAlchemy let asyncmy's OperationalError 2006 through unwrapped, and the
    relay, waiting out only wrapped errors, ended with it."""
    assert database_unavailable(asyncmy.errors.OperationalError(2006, "MySQL server has gone away"))
    assert database_unavailable(asyncmy.errors.OperationalError(2013, "Lost connection"))
    assert not database_unavailable(asyncmy.errors.ProgrammingError(1064, "syntax error"))


def test_an_event_handler_meeting_the_drivers_own_outage_error_waits_instead_of_failing() -> None:
    """Counted as the handler's failure, such an error would dead-letter a good event after
    a few attempts; an outage is waited out without counting."""
    from common.inbox import _is_outage

    assert _is_outage(asyncmy.errors.OperationalError(2006, "MySQL server has gone away"))
    assert not _is_outage(asyncmy.errors.IntegrityError(1062, "Duplicate entry"))
