"""Fixtures of the sync service's tests: migrated throwaway schemas for this service and the
invoice service, the billing platform simulator as a real process, the app, a job runner,
and helpers that carry jobs and events along the way the workers do."""

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.events import CloudEvent
from common.testing.identity import ISSUER, TestIssuer
from common.testing.plugin import migrate_schema, temporary_database
from common.testing.servers import MysqlServer
from invoice.consumers import on_invoices_imported
from invoice.models import Invoice
from simulators.billing_platform_testing import BillingPlatformControl, BillingPlatformServer
from sync.commands import JOBS_TOPIC, JobRequested
from sync.config import SyncSettings
from sync.crypto import Keyring
from sync.events import INVOICES_IMPORTED, TOPIC
from sync.jobs import JobRunner
from sync.main import create_app
from sync.models import Connection, JobState, OutboxMessage
from sync.platform import PlatformApi

HERE = Path(__file__).resolve().parent
ALEMBIC_INI = HERE.parent / "alembic.ini"
INVOICE_ALEMBIC_INI = HERE.parent.parent / "invoice" / "alembic.ini"
TEST_KEY = "k1:" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture(scope="session")
async def sync_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "sync_test") as url:
        migrate_schema(ALEMBIC_INI, "SYNC", url)
        yield url


@pytest.fixture(scope="session")
async def invoice_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "sync_invoice_test") as url:
        migrate_schema(INVOICE_ALEMBIC_INI, "INVOICE", url)
        yield url


@pytest.fixture(scope="session")
def platform_server() -> Iterator[BillingPlatformServer]:
    with BillingPlatformServer() as server:
        yield server


@pytest.fixture
def platform(platform_server: BillingPlatformServer) -> Iterator[BillingPlatformControl]:
    """The simulator's control API, with no fault left over from another test."""
    control = platform_server.control_client()
    control.clear_faults()
    yield control
    control.clear_faults()


@pytest.fixture(scope="session")
def settings(sync_database: str, kafka_bootstrap: str, test_issuer: TestIssuer) -> SyncSettings:
    return SyncSettings(
        environment="test",
        database_url=SecretStr(sync_database),
        kafka_bootstrap_servers=kafka_bootstrap,
        auth_jwks_url=test_issuer.jwks_url,
        auth_issuer=ISSUER,
        connection_key=SecretStr(TEST_KEY),
        page_size=50,
        request_timeout_seconds=2,
        retry_for_seconds=4,
        retry_base_seconds=0.05,
        retry_max_wait_seconds=0.3,
        max_retry_after_seconds=2,
        breaker_threshold=5,
        breaker_open_seconds=2,
        max_page_items=500,
        pages_per_slice=4,
        lease_seconds=10,
        park_base_seconds=1,
        park_max_seconds=5,
        manual_run_interval_seconds=60,
    )


@pytest.fixture(scope="session")
async def app(settings: SyncSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return factory


@pytest.fixture(scope="session")
async def invoice_sessions(
    invoice_database: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(invoice_database, pool_size=2)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sync.test") as client:
        yield client


@pytest.fixture
def owner() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def auth(test_issuer: TestIssuer, owner: uuid.UUID) -> dict[str, str]:
    return test_issuer.headers(owner)


@pytest.fixture(scope="session")
def keyring(settings: SyncSettings) -> Keyring:
    return Keyring.parse(settings.connection_key.get_secret_value())


@pytest.fixture
async def runner(
    sessionmaker: async_sessionmaker[AsyncSession], settings: SyncSettings, keyring: Keyring
) -> AsyncIterator[JobRunner]:
    """A job runner as a worker has one; a fresh circuit breaker per test."""
    async with httpx.AsyncClient() as http:
        yield JobRunner(sessionmaker, settings, keyring, PlatformApi(http, settings))


class Pipeline:
    """Carries a connection's jobs and events the way the workers and Kafka would: runs the
    job its current token names, and hands each `billing.invoices_imported` of the sync
    outbox to the invoice service's real handler, in order, each in its own transaction."""

    def __init__(
        self,
        runner: JobRunner,
        sync_sessions: async_sessionmaker[AsyncSession],
        invoice_sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.runner = runner
        self.sync_sessions = sync_sessions
        self.invoice_sessions = invoice_sessions
        self.delivered: set[str] = set()
        self.outcomes: list[str] = []
        self.connections: set[str] = set()

    async def connection(self, connection_id: uuid.UUID) -> Connection:
        async with self.sync_sessions() as session:
            connection = await session.get(Connection, connection_id)
            assert connection is not None
            return connection

    async def job(self, connection_id: uuid.UUID) -> JobRequested:
        """The job message the connection's current token belongs to (from the outbox)."""
        connection = await self.connection(connection_id)
        async with self.sync_sessions() as session:
            rows = await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.topic == JOBS_TOPIC)
                .order_by(OutboxMessage.id.desc())
            )
            for row in rows:
                event = CloudEvent.model_validate_json(row.payload)
                job = JobRequested.model_validate(event.data)
                if job.connection_id == connection_id and job.token == connection.job_token:
                    return job
        raise AssertionError("no job message carries the connection's token")

    async def run_once(self, connection_id: uuid.UUID) -> str:
        self.connections.add(str(connection_id))
        outcome = await self.runner.run(await self.job(connection_id))
        self.outcomes.append(outcome)
        await self.deliver()
        return outcome

    async def sync(self, connection_id: uuid.UUID, max_jobs: int = 100) -> Connection:
        """Run jobs until the connection rests (idle, parked or failed)."""
        for _ in range(max_jobs):
            connection = await self.connection(connection_id)
            if connection.state != JobState.QUEUED:
                return connection
            await self.run_once(connection_id)
        raise AssertionError("the sync did not come to rest")

    async def events(self) -> list[CloudEvent]:
        async with self.sync_sessions() as session:
            rows = await session.scalars(
                select(OutboxMessage).where(OutboxMessage.topic == TOPIC).order_by(OutboxMessage.id)
            )
            return [CloudEvent.model_validate_json(row.payload) for row in rows]

    async def deliver(self) -> int:
        """Hand the events not yet delivered to the invoice service; how many."""
        count = 0
        for event in await self.events():
            if event.id in self.delivered or event.type != INVOICES_IMPORTED:
                continue
            if event.data["connection_id"] not in self.connections:
                continue  # another test's
            await self.apply(event)
            self.delivered.add(event.id)
            count += 1
        return count

    async def apply(self, event: CloudEvent) -> None:
        async with self.invoice_sessions() as session, session.begin():
            await on_invoices_imported(session, event)

    async def invoices(self, owner_id: uuid.UUID) -> dict[str, Invoice]:
        async with self.invoice_sessions() as session:
            rows = await session.scalars(select(Invoice).where(Invoice.owner_id == owner_id))
            found: dict[str, Invoice] = {}
            for invoice in rows:
                assert invoice.external_id is not None
                assert invoice.external_id not in found, "an invoice imported twice"
                found[invoice.external_id] = invoice
            return found


@pytest.fixture
def pipeline(
    runner: JobRunner,
    sessionmaker: async_sessionmaker[AsyncSession],
    invoice_sessions: async_sessionmaker[AsyncSession],
) -> Pipeline:
    return Pipeline(runner, sessionmaker, invoice_sessions)


async def connect(
    api: httpx.AsyncClient, auth: dict[str, str], base_url: str, api_key: str
) -> uuid.UUID:
    response = await api.post(
        "/api/sync/connections", json={"base_url": base_url, "api_key": api_key}, headers=auth
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])
