"""Fixtures of the invoice service's tests: a migrated throwaway schema, the app, a client."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.identity import ISSUER, TestIssuer
from common.testing.plugin import migrate_schema, temporary_database
from common.testing.servers import MysqlServer
from invoice.config import InvoiceSettings
from invoice.main import create_app

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def migrate(database_url: str) -> None:
    migrate_schema(ALEMBIC_INI, "INVOICE", database_url)


@pytest.fixture(scope="session")
async def invoice_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "invoice_test") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def settings(
    invoice_database: str, kafka_bootstrap: str, test_issuer: TestIssuer
) -> InvoiceSettings:
    return InvoiceSettings(
        environment="test",
        database_url=SecretStr(invoice_database),
        kafka_bootstrap_servers=kafka_bootstrap,
        auth_jwks_url=test_issuer.jwks_url,
        auth_issuer=ISSUER,
        cursor_secret=SecretStr("test-cursor-secret"),
        past_due_sweep_seconds=0.5,
    )


@pytest.fixture(scope="session")
async def app(settings: InvoiceSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    """The app's own sessions, for looking at what a request left in the schema."""
    factory: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return factory


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://invoice.test") as client:
        yield client


@pytest.fixture
def owner() -> uuid.UUID:
    """A fresh user per test, so tests share the schema without seeing each other's rows."""
    return uuid.uuid4()


@pytest.fixture
def auth(test_issuer: TestIssuer, owner: uuid.UUID) -> dict[str, str]:
    return test_issuer.headers(owner)
