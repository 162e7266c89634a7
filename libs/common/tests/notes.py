"""A small service of the tests' own for the outbox, inbox and tracing tests: its outbox and
inbox tables, and the notes its handler writes, one row per handled event."""

import contextlib
from collections.abc import AsyncIterator

from pydantic import BaseModel
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import create_engine, create_sessionmaker, service_metadata
from common.inbox import InboxMessageMixin
from common.outbox import OutboxMessageMixin
from common.testing.plugin import temporary_database
from common.testing.servers import MysqlServer


class Base(DeclarativeBase):
    metadata = service_metadata()


class OutboxMessage(OutboxMessageMixin, Base):
    pass


class InboxMessage(InboxMessageMixin, Base):
    pass


class Note(Base):
    """What the test handler writes: one row per handled event."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(String(200))


class NoteWritten(BaseModel):
    text: str


@contextlib.asynccontextmanager
async def notes_schema(
    mysql_server: MysqlServer, prefix: str
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A throwaway schema with the service's tables; its sessions."""
    async with temporary_database(mysql_server, prefix) as url:
        engine = create_engine(url, pool_size=4)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield create_sessionmaker(engine)
        await engine.dispose()
