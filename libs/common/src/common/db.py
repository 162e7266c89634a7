"""The async engine and sessions of one service schema, and its declarative base."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import BINARY, Connection, Dialect, MetaData, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState
from sqlalchemy.types import TypeDecorator

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


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """An engine on the service's own schema; READ COMMITTED keeps listings lock-free."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
        pool_reset_on_return=None,  # _end_open_transaction below does it, when needed
    )
    event.listen(engine.sync_engine, "reset", _end_open_transaction)
    return engine


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
    """A session for endpoints that only read: nothing to commit, so no COMMIT round trip;
    closing the session rolls the read's transaction back. Anything written through it is
    discarded."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(_read_session)]


class BinaryUUID(TypeDecorator[uuid.UUID]):
    """A UUID stored in 16 bytes: every secondary index repeats the primary key, so the
    key's width is paid once per index entry."""

    impl = BINARY(16)
    cache_ok = True

    def process_bind_param(self, value: uuid.UUID | None, dialect: Dialect) -> bytes | None:
        return None if value is None else value.bytes

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(bytes=bytes(value))
