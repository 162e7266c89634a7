"""Alembic environment of user_svc: runs migrations over the service's async engine."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from common.db import create_engine
from user.config import get_settings
from user.models import Base

target_metadata = Base.metadata


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run() -> None:
    engine = create_engine(get_settings().database_url.get_secret_value(), pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(_migrate)
    await engine.dispose()


asyncio.run(_run())
