"""Fixtures of the payment service's tests: a migrated throwaway schema, FakePay as a real
process, the app, and a client."""

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.identity import ISSUER, TestIssuer
from common.testing.plugin import migrate_schema, temporary_database
from common.testing.servers import MysqlServer
from payment.config import PaymentSettings
from payment.main import create_app
from payment.service import Charging
from simulators.testing import FakePayControl, FakePayServer

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def migrate(database_url: str) -> None:
    migrate_schema(ALEMBIC_INI, "PAYMENT", database_url)


@pytest.fixture(scope="session")
async def payment_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "payment_test") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def fakepay_server() -> Iterator[FakePayServer]:
    with FakePayServer() as server:
        yield server


@pytest.fixture
def fakepay(fakepay_server: FakePayServer) -> Iterator[FakePayControl]:
    """FakePay's control API, with no fault left over from another test.

    The ledger is kept: tests use fresh transaction ids and read only their own.
    """
    control = fakepay_server.control_client()
    control.clear_faults()
    yield control
    control.clear_faults()


@pytest.fixture(scope="session")
def settings(
    payment_database: str,
    kafka_bootstrap: str,
    test_issuer: TestIssuer,
    fakepay_server: FakePayServer,
) -> PaymentSettings:
    return PaymentSettings(
        environment="test",
        database_url=SecretStr(payment_database),
        kafka_bootstrap_servers=kafka_bootstrap,
        auth_jwks_url=test_issuer.jwks_url,
        auth_issuer=ISSUER,
        cursor_secret=SecretStr("test-cursor-secret"),
        fakepay_url=fakepay_server.url,
        # Short, so a hanging provider costs a test one second; attempts settle 2.5 s old.
        provider_timeout_seconds=1.0,
        provider_connect_timeout_seconds=0.5,
        reconcile_grace_seconds=0.5,
        retry_after_seconds=2,
    )


@pytest.fixture(scope="session")
async def app(settings: PaymentSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    """The app's own sessions, for looking at what a request left in the schema."""
    factory: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return factory


@pytest.fixture(scope="session")
def charging(app: FastAPI, settings: PaymentSettings) -> Charging:
    """What the worker's schedule is given: the app's sessions and provider."""
    return Charging(app.state.sessionmaker, app.state.provider, settings)


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://payment.test") as client:
        yield client


@pytest.fixture
def owner() -> uuid.UUID:
    """A fresh user per test, so tests share the schema without seeing each other's rows."""
    return uuid.uuid4()


@pytest.fixture
def auth(test_issuer: TestIssuer, owner: uuid.UUID) -> dict[str, str]:
    return test_issuer.headers(owner)
