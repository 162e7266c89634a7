"""The async engine and sessions of one service schema, and its declarative base."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import BINARY, Connection, Dialect, MetaData, event, exc
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState
from sqlalchemy.types import TypeDecorator

from common.tracing import trace_engine

# Constraint and index names that stay the same in every migration and every schema.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}


def service_metadata() -> MetaData:
    """A new metadata for one service's declarative base.

    Each service declares `class Base(DeclarativeBase): metadata = service_metadata()`, so
    every service has its own registry: two services' `outbox_messages` tables never meet,
    even when their tests run in one process.
    """
    return MetaData(naming_convention=NAMING_CONVENTION)


# A connection idle longer than this is pinged before it is handed out; one used more
# recently is trusted, and a statement that finds it dead is retried (RetryReadMiddleware).
# Pinging every checkout (pool_pre_ping) costs a round trip on every request for a failure
# that a busy pool almost never meets.
IDLE_BEFORE_PING_SECONDS = 5.0
# Well under the server's wait_timeout (MariaDB's default is 8 hours; deploy/mysql keeps the
# default), so the pool drops a connection before the server does.
POOL_RECYCLE_SECONDS = 1800
_LAST_USED = "last_used"
# Set in the ASGI scope of a request that opened a write session (SessionDep): a GET that
# writes (a sign-in's callback) is not run again by common.middleware.RetryReadMiddleware.
WRITE_SESSION_OPENED = "ledgerline.write_session_opened"


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """The engine of writes on the service's own schema: one transaction per request or
    message, READ COMMITTED, which keeps listings lock-free."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
        isolation_level="READ COMMITTED",
        pool_reset_on_return=None,  # _end_open_transaction below does it, when needed
    )
    event.listen(engine.sync_engine, "reset", _end_open_transaction)
    _ping_only_when_idle(engine)
    trace_engine(engine)
    return engine


def create_read_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """The engine of reads: connections in autocommit and read-only mode.

    Each statement is its own transaction, ended by the server when the statement ends, so a
    read session has nothing to commit or roll back when it closes: a read that needs one
    query costs one round trip. READ ONLY makes the server refuse a write sent through it,
    which autocommit would otherwise keep at once.
    """
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
        isolation_level="AUTOCOMMIT",
        # The dialect sends ROLLBACK when a connection's "transaction" closes even in
        # autocommit mode; there is nothing to roll back.
        skip_autocommit_rollback=True,
        pool_reset_on_return=None,
    )
    event.listen(engine.sync_engine, "connect", _read_only)
    _ping_only_when_idle(engine)
    trace_engine(engine)
    return engine


def _read_only(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
    finally:
        cursor.close()


def _ping_only_when_idle(engine: AsyncEngine) -> None:
    """Ping a connection at checkout only if it sat idle in the pool for a while.

    A connection returned a few seconds ago was alive then; the rare one that died since
    fails its first statement, which invalidates the whole pool (SQLAlchemy's reaction to a
    disconnect error) and is retried once for reads. A connection idle for longer (the
    quiet hours in which a server restarts or times it out) is checked before use; if it
    is dead the pool opens a new one, and the others, as old, are replaced too.
    """
    dialect = engine.sync_engine.dialect

    def stamp(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        last_used = record.info.get(_LAST_USED)
        if last_used is None or time.monotonic() - last_used < IDLE_BEFORE_PING_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.InvalidatePoolError(f"ping failed: {type(error).__name__}") from error

    event.listen(engine.sync_engine, "connect", stamp)
    event.listen(engine.sync_engine, "checkin", stamp)
    event.listen(engine.sync_engine, "checkout", ping_if_idle)


def _end_open_transaction(
    dbapi_connection: Any, _record: ConnectionPoolEntry, state: PoolResetState
) -> None:
    """Roll back a connection returned to the pool with a transaction still open, and only
    such a connection.

    The pool's own reset sends ROLLBACK for every connection returned, even when the session
    has just committed or rolled back: one round trip per request for nothing. The server
    says in each reply whether a transaction is open, and the driver keeps that flag.
    """
    if state.terminate_only or not state.asyncio_safe:
        return  # the pool closes this connection; the server ends what it left open
    if dbapi_connection.driver_connection.get_transaction_status():
        dbapi_connection.rollback()


def run_migrations(database_url: str, metadata: MetaData) -> None:
    """Alembic's `env.py` body for every service: the migrations over the async engine."""
    from alembic import context

    def migrate(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run())


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values after commit, for building the response."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed when the endpoint returns, before the reply."""
    request.scope[WRITE_SESSION_OPENED] = True  # such a request is not run again on failure
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# scope="function" makes the commit run before the response is sent, so a failed commit
# becomes an error reply rather than a success the database never kept.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]


async def _read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for endpoints that only read, on the read engine: each statement is one
    round trip and nothing is sent when the session closes. The server refuses a write."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    async with sessionmaker() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(_read_session)]


def read_connection(request: Request) -> AsyncContextManager[AsyncConnection]:
    """A connection of the read engine, for a hot read of Core statements only: no ORM
    session to build and close around it (about a tenth of the listing's CPU), and no
    dependency to solve (`async with read_connection(request) as connection:`)."""
    engine: AsyncEngine = request.app.state.read_engine
    return engine.connect()


class BinaryUUID(TypeDecorator[uuid.UUID]):
    """A UUID stored in 16 bytes: every secondary index repeats the primary key, so the
    key's width is paid once per index entry."""

    impl = BINARY(16)
    cache_ok = True

    def process_bind_param(self, value: uuid.UUID | None, dialect: Dialect) -> bytes | None:
        return None if value is None else value.bytes

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(bytes=bytes(value))
