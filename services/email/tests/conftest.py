"""Fixtures of the email service's tests: a migrated throwaway schema, the providers'
simulators and moto's server (S3 for the PDFs, SES) as real processes, the app, a
dispatcher over the simulators, and a client."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.identity import ISSUER, TestIssuer
from common.testing.plugin import migrate_schema, temporary_database
from common.testing.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server
from common.testing.servers import MysqlServer, free_port
from mailer.config import EmailSettings
from mailer.dispatcher import AttachmentStore, Dispatcher
from mailer.main import create_app
from mailer.models import Message
from mailer.providers import EmailProvider, create_providers
from simulators.mail_testing import MailProvidersServer, SmtpSinkServer

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
BUCKET = "ledgerline-invoice-pdfs"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ledgerline-ses-events"


def migrate(database_url: str) -> None:
    migrate_schema(ALEMBIC_INI, "EMAIL", database_url)


@pytest.fixture(scope="session")
async def email_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "email_test") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def providers_server() -> Iterator[MailProvidersServer]:
    with MailProvidersServer() as server:
        yield server


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSinkServer]:
    with SmtpSinkServer() as server:
        yield server


@pytest.fixture(scope="session")
def aws() -> Iterator[S3Server]:
    """moto's server: the PDFs' bucket, and SES with our sender verified."""
    with S3Server() as server:
        server.client("s3").create_bucket(Bucket=BUCKET)
        server.client("ses").verify_email_identity(EmailAddress="invoices@ledgerline.example")
        yield server


@pytest.fixture
def simulators(providers_server: MailProvidersServer) -> Iterator[MailProvidersServer]:
    """The providers with no fault or webhook target left over from another test. Messages
    are kept: tests use fresh send ids and read only their own."""
    providers_server.clear_faults()
    providers_server.report_to(None)
    yield providers_server
    providers_server.clear_faults()
    providers_server.report_to(None)


def make_settings(
    database_url: str,
    kafka_bootstrap: str,
    test_issuer: TestIssuer,
    providers_server: MailProvidersServer,
    smtp_sink: SmtpSinkServer,
    aws: S3Server,
    **overrides: object,
) -> EmailSettings:
    keys = providers_server.keys()
    values: dict[str, object] = {
        "environment": "test",
        "database_url": SecretStr(database_url),
        "kafka_bootstrap_servers": kafka_bootstrap,
        "auth_jwks_url": test_issuer.jwks_url,
        "auth_issuer": ISSUER,
        "cursor_secret": SecretStr("test-cursor-secret"),
        "providers": "sendgrid,mailgun,sparkpost,ses,smtp",
        "sendgrid_url": providers_server.url,
        "sendgrid_api_key": SecretStr("SG.test"),
        "sendgrid_webhook_public_key": keys["sendgrid_public_key"],
        "mailgun_url": providers_server.url,
        "mailgun_api_key": SecretStr("key-test"),
        "mailgun_webhook_signing_key": SecretStr(keys["mailgun_signing_key"]),
        "sparkpost_url": providers_server.url,
        "sparkpost_api_key": SecretStr("sp-test"),
        "ses_endpoint_url": aws.endpoint_url,
        "s3_endpoint_url": aws.endpoint_url,
        "aws_access_key_id": SecretStr(ACCESS_KEY_ID),
        "aws_secret_access_key": SecretStr(SECRET_ACCESS_KEY),
        "sns_topic_arn": TOPIC_ARN,
        "sns_certificate_url_prefixes": f"https://sns.us-east-1.amazonaws.com/,{providers_server.url}/sns/",
        "smtp_port": smtp_sink.port,
        # Short, so a hanging provider costs a test about a second.
        "provider_timeout_seconds": 1.0,
        "in_doubt_grace_seconds": 0.5,
        "unverifiable_wait_seconds": 3,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1,
        "breaker_threshold": 3,
        "breaker_ttl_seconds": 2,
        "dispatch_idle_seconds": 0.05,
    }
    values.update(overrides)
    return EmailSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(
    email_database: str,
    kafka_bootstrap: str,
    test_issuer: TestIssuer,
    providers_server: MailProvidersServer,
    smtp_sink: SmtpSinkServer,
    aws: S3Server,
) -> EmailSettings:
    return make_settings(
        email_database, kafka_bootstrap, test_issuer, providers_server, smtp_sink, aws
    )


@pytest.fixture(scope="session")
async def app(settings: EmailSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return factory


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture(scope="session")
def store(settings: EmailSettings) -> AttachmentStore:
    return AttachmentStore(settings)


@pytest.fixture
def make_dispatcher(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: EmailSettings,
    http: httpx.AsyncClient,
    store: AttachmentStore,
) -> Callable[..., Dispatcher]:
    """A dispatcher with fresh breakers (per test), over some of the providers in order."""

    def make(order: str = "sendgrid,mailgun,sparkpost", **overrides: object) -> Dispatcher:
        configured = settings.model_copy(update={"providers": order, **overrides})
        providers: dict[str, EmailProvider] = create_providers(configured, http)
        return Dispatcher(sessionmaker, providers, configured, store)

    return make


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://email.test") as client:
        yield client


@pytest.fixture
def owner() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def auth(test_issuer: TestIssuer, owner: uuid.UUID) -> dict[str, str]:
    return test_issuer.headers(owner)


async def wait_for_port_async(host: str, port: int) -> None:
    """Until something listens there (the server starts in this same event loop)."""
    async with asyncio.timeout(20):
        while True:
            try:
                _reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return


@pytest.fixture(scope="session")
async def email_url(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real port, for the simulators' webhooks (its lifespan is already on)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_for_port_async("127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


SHARED_VARIABLES = {
    "environment": "ENVIRONMENT",
    "log_level": "LOG_LEVEL",
    "log_format": "LOG_FORMAT",
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "kafka_fetch_max_wait_ms": "KAFKA_FETCH_MAX_WAIT_MS",
    "auth_jwks_url": "AUTH_JWKS_URL",
    "auth_issuer": "AUTH_ISSUER",
    "auth_audience": "AUTH_AUDIENCE",
    "idempotency_secret": "IDEMPOTENCY_SECRET",
}


def environment_of(settings: EmailSettings) -> dict[str, str]:
    """The variables that give a process of the service these settings."""
    variables = {}
    for name, value in settings:
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        variables[SHARED_VARIABLES.get(name, f"EMAIL_{name.upper()}")] = text
    return variables


@pytest.fixture(autouse=True)
async def no_leftovers(request: pytest.FixtureRequest) -> None:
    """Messages earlier tests left queued would be sent by this test's dispatcher, using up
    its faults and its breaker's count: they are put out of reach (the fault run has a
    database of its own)."""
    if "sessionmaker" not in request.fixturenames:
        return
    factory: async_sessionmaker[AsyncSession] = request.getfixturevalue("sessionmaker")
    async with factory() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.status.in_(["queued", "sending"]))
            .values(status="failed", lease_until=None, failure_reason="left by an earlier test")
        )
