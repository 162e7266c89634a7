"""Fixtures of the user service's tests: a migrated throwaway schema, two OpenID Connect
providers (oidc-provider-mock as real HTTP servers), the app, and a browser-like client."""

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.plugin import migrate_schema, temporary_database
from common.testing.servers import MysqlServer, free_port, wait_for_port
from user.config import OidcProviderSettings, UserSettings
from user.main import create_app

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
# The address the app believes browsers reach it at; the test browser routes it to the app.
BASE_URL = "http://user.test"
APP_ORIGIN = "http://app.test"
CLIENT_SECRET = "test-client-secret-0f1e2d3c"


def migrate(database_url: str) -> None:
    migrate_schema(ALEMBIC_INI, "USER", database_url)


def start_mock_provider(log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """oidc-provider-mock in its own process on a free loopback port; (process, issuer).

    It is not waited for: the caller waits for the port, so several start side by side."""
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "oidc_provider_mock",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


def wait_for_provider(issuer: str) -> None:
    parts = urlsplit(issuer)
    wait_for_port(parts.hostname or "127.0.0.1", parts.port or 80)


@pytest.fixture(scope="session")
def mock_providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two independent providers, "mock" and "other": issuer URL by name."""
    logs = tmp_path_factory.mktemp("oidc-provider-mock")
    started = {name: start_mock_provider(logs / f"{name}.log") for name in ("mock", "other")}
    try:
        for _, issuer in started.values():
            wait_for_provider(issuer)
        yield {name: issuer for name, (_, issuer) in started.items()}
    finally:
        for process, _ in started.values():
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
async def user_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "user_test") as url:
        migrate(url)
        yield url


def make_settings(database_url: str, kafka: str, providers: dict[str, str]) -> UserSettings:
    return UserSettings(
        environment="test",
        database_url=SecretStr(database_url),
        kafka_bootstrap_servers=kafka,
        public_base_url=BASE_URL,
        oidc_providers={
            name: OidcProviderSettings(
                issuer=issuer,
                client_id=f"ledgerline-{name}",
                client_secret=SecretStr(CLIENT_SECRET),
            )
            for name, issuer in providers.items()
        },
        secret_key=SecretStr("test-secret-key-for-sealing"),
        redirect_origins=[APP_ORIGIN],
        cookie_secure=False,
        cleanup_seconds=0.5,
    )


@pytest.fixture(scope="session")
def settings(
    user_database: str, kafka_bootstrap: str, mock_providers: dict[str, str]
) -> UserSettings:
    return make_settings(user_database, kafka_bootstrap, mock_providers)


@pytest.fixture(scope="session")
async def app(settings: UserSettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    """The app's own sessions, for looking at what a request left in the schema."""
    factory: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return factory


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookie jar, like one browser: requests to BASE_URL reach the app
    in-process, requests to the providers go over the network to the real servers."""
    async with httpx.AsyncClient(
        mounts={BASE_URL: httpx.ASGITransport(app=app)}, base_url=BASE_URL, timeout=15
    ) as client:
        yield client


@pytest.fixture
def subject() -> str:
    """A provider account no other test signs in with."""
    return f"alice-{uuid.uuid4().hex[:8]}@example.com"
