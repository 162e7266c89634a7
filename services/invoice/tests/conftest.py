"""Fixtures of the invoice service's tests: a migrated throwaway schema, the app, a client;
and for card payments, the payment service's API and FakePay as processes."""

import os
import subprocess
import sys
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
from common.testing.s3 import S3Server
from common.testing.servers import MysqlServer, free_port, wait_for_port
from invoice.config import InvoiceSettings
from invoice.main import create_app
from simulators.testing import FakePayControl, FakePayServer

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
PDF_BUCKET = "ledgerline-invoices-test"


def migrate(database_url: str) -> None:
    migrate_schema(ALEMBIC_INI, "INVOICE", database_url)


@pytest.fixture(scope="session")
async def invoice_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "invoice_test") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3 server as a process, with the PDF bucket; versioned, so a test can count
    how many times an object was written."""
    with S3Server() as server:
        # boto3 in this process finds moto's placeholder credentials here; the endpoint is
        # passed in the settings, as a deployment would.
        for name, value in server.environment().items():
            if name != "AWS_ENDPOINT_URL":
                os.environ.setdefault(name, value)
        client = server.client()
        client.create_bucket(Bucket=PDF_BUCKET)
        client.put_bucket_versioning(
            Bucket=PDF_BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
        yield server


@pytest.fixture(scope="session")
def settings(
    invoice_database: str, kafka_bootstrap: str, test_issuer: TestIssuer, s3: S3Server
) -> InvoiceSettings:
    return InvoiceSettings(
        environment="test",
        database_url=SecretStr(invoice_database),
        kafka_bootstrap_servers=kafka_bootstrap,
        auth_jwks_url=test_issuer.jwks_url,
        auth_issuer=ISSUER,
        cursor_secret=SecretStr("test-cursor-secret"),
        past_due_sweep_seconds=0.5,
        # Nothing listens on port 9 (discard): the plain app's payment service is down. The
        # tests that pay use `paying_app`, wired to a running one.
        payment_api_url="http://127.0.0.1:9",
        pdf_bucket=PDF_BUCKET,
        s3_endpoint_url=s3.endpoint_url,
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


# --- the payment service, for card payments ---------------------------------------------------
# Started only by the tests that pay: the real payment API as a process, in front of FakePay
# as a process, on a throwaway schema of its own.

PAYMENT_ALEMBIC_INI = Path(__file__).resolve().parents[2] / "payment" / "alembic.ini"


@pytest.fixture(scope="session")
def fakepay() -> Iterator[FakePayServer]:
    with FakePayServer() as server:
        yield server


@pytest.fixture
def fakepay_control(fakepay: FakePayServer) -> Iterator[FakePayControl]:
    """FakePay's control API; faults a test adds are gone after it."""
    control = fakepay.control_client()
    yield control
    control.clear_faults()


@pytest.fixture(scope="session")
async def payment_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "payment_for_invoice_test") as url:
        migrate_schema(PAYMENT_ALEMBIC_INI, "PAYMENT", url)
        yield url


@pytest.fixture(scope="session")
def payment_api(
    payment_database: str,
    fakepay: FakePayServer,
    kafka_bootstrap: str,
    test_issuer: TestIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The payment service's API as a process; its log is in the session's temporary files."""
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "PAYMENT_DATABASE_URL": payment_database,
        "PAYMENT_FAKEPAY_URL": fakepay.url,
        "PAYMENT_CURSOR_SECRET": "test-cursor-secret",
        # Short waits on the provider, so the tests of a hanging provider stay short.
        "PAYMENT_PROVIDER_TIMEOUT_SECONDS": "2",
        "AUTH_JWKS_URL": test_issuer.jwks_url,
        "AUTH_ISSUER": ISSUER,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "payment.main:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    log_path = tmp_path_factory.mktemp("payment-api") / "payment-api.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
async def paying_app(settings: InvoiceSettings, payment_api: str) -> AsyncIterator[FastAPI]:
    """The invoice API wired to the payment service's process."""
    application = create_app(settings.model_copy(update={"payment_api_url": payment_api}))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def paying_api(paying_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=paying_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://invoice.test") as client:
        yield client
