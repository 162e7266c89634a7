"""The engine's pool on a real MySQL: a connection coming back to the pool is rolled back
when it still holds a transaction, and is spared the round trip when it does not."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import create_engine, create_sessionmaker
from common.errors import database_unavailable
from common.testing.plugin import temporary_database
from common.testing.servers import MysqlServer


@pytest.fixture
async def engine(mysql_server: MysqlServer) -> AsyncIterator[AsyncEngine]:
    async with temporary_database(mysql_server, "common_db") as url:
        # One connection, reused by every step, so its session counters tell the whole story.
        engine = create_engine(url, pool_size=1)
        async with engine.begin() as connection:
            await connection.execute(
                text("CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(50))")
            )
        yield engine
        await engine.dispose()


async def _rollbacks_so_far(engine: AsyncEngine) -> int:
    """ROLLBACKs the pooled connection has sent, not counting this question's own."""
    async with engine.connect() as connection:
        result = await connection.execute(text("SHOW SESSION STATUS LIKE 'Com_rollback'"))
        return int(result.one()[1])


async def test_a_session_that_ended_its_transaction_is_not_rolled_back_again(
    engine: AsyncEngine,
) -> None:
    sessionmaker = create_sessionmaker(engine)
    before = await _rollbacks_so_far(engine)

    for n in range(5):
        async with sessionmaker() as session:  # a read: the session rolls back on close
            await session.execute(text("SELECT COUNT(*) FROM notes"))
        async with sessionmaker() as session:  # a write: committed
            await session.execute(text("INSERT INTO notes (body) VALUES (:n)"), {"n": str(n)})
            await session.commit()

    # One ROLLBACK per read session, none per committed one, one for the first question.
    assert await _rollbacks_so_far(engine) - before == 5 + 1


async def test_a_connection_returned_inside_a_transaction_is_rolled_back(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        # Written past SQLAlchemy, which therefore does not know a transaction is open.
        driver = (await connection.get_raw_connection()).driver_connection
        async with driver.cursor() as cursor:
            await cursor.execute("INSERT INTO notes (body) VALUES ('left open')")

    async with engine.connect() as connection:  # the same pooled connection
        left = await connection.scalar(text("SELECT COUNT(*) FROM notes WHERE body = 'left open'"))

    assert left == 0


async def test_the_drivers_bare_error_on_a_reset_while_connecting_is_a_lost_connection(
    mysql_server: MysqlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncmy raises a bare RuntimeError ("Transport does not expose socket instance") when
    the connection is reset before it has read the socket's options (seen in the fault drill
    under load, with connections to MySQL reset as they open). The engine turns it into the
    lost connection it is, so the request is answered 503, not 500."""
    engine = create_engine(mysql_server.url(), pool_size=1)
    dialect = engine.sync_engine.dialect

    def reset_while_connecting(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("Transport does not expose socket instance")

    # The driver's own connect, standing in for the reset that is hard to time on loopback.
    monkeypatch.setattr(dialect, "connect", reset_while_connecting)
    try:
        with pytest.raises(DBAPIError) as failed:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert database_unavailable(failed.value)
    finally:
        await engine.dispose()
