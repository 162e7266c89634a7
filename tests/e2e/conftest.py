"""The whole suite as it runs for real (common.testing.suite): an OpenID Connect provider,
FakePay, every service's API and worker as processes, and the nginx gateway in front. Tests
act as browsers and API clients against the gateway only.

LEDGERLINE_E2E_REPLICAS=2 runs every API and worker twice behind the gateway.
"""

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from common.testing.plugin import broker_of_its_own, migrate_schema, temporary_database
from common.testing.s3 import S3Server
from common.testing.servers import MysqlServer
from common.testing.suite import PDF_BUCKET, SERVICES, Suite, run_suite
from simulators.mail_testing import MailProvidersServer

__all__ = ["Suite"]


@pytest.fixture(scope="session")
async def databases(mysql_server: MysqlServer) -> AsyncIterator[dict[str, str]]:
    """A migrated throwaway schema per service, by service name."""
    async with contextlib.AsyncExitStack() as stack:
        urls = {}
        for service in SERVICES:
            url = await stack.enter_async_context(
                temporary_database(mysql_server, f"e2e_{service.name}")
            )
            migrate_schema(service.alembic_ini, service.prefix, url)
            urls[service.name] = url
        yield urls


@pytest.fixture(scope="session")
def object_storage() -> Iterator[S3Server]:
    """S3 for the suite (moto's server, a process), with the invoice PDFs' bucket."""
    with S3Server() as server:
        server.client().create_bucket(Bucket=PDF_BUCKET)
        yield server


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A broker of the suite's own (a new dev broker here, the named one where a broker is
    given): the services' workers read their topics from the start, and the events other
    tests published for their own purposes, made-up ones among them, are none of theirs."""
    with broker_of_its_own() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def mail_providers() -> Iterator[MailProvidersServer]:
    """The email providers' simulator (SendGrid, Mailgun, SparkPost APIs), a process."""
    with MailProvidersServer() as server:
        yield server


@pytest.fixture(scope="session")
def suite(
    databases: dict[str, str],
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    object_storage: S3Server,
    mail_providers: MailProvidersServer,
) -> Iterator[Suite]:
    with run_suite(
        databases=databases,
        kafka_bootstrap=kafka_bootstrap,
        storage=object_storage,
        mail=mail_providers,
        logs=tmp_path_factory.mktemp("suite-logs"),
        replicas=int(os.environ.get("LEDGERLINE_E2E_REPLICAS", "1")),
    ) as running:
        yield running


@dataclass
class SignedIn:
    """A user signed in through the gateway: their tokens and a client that sends them."""

    user_id: str
    access_token: str
    refresh_token: str
    api: httpx.AsyncClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def sign_in(suite: Suite, browser: httpx.AsyncClient, subject: str) -> dict[str, Any]:
    """A browser's way through sign-in, all of it through the gateway but the provider's page."""
    start = await browser.get(f"{suite.gateway}/api/auth/mock/login")
    assert start.status_code == 302, start.text
    assert start.headers["location"].startswith(suite.provider)
    form = await browser.post(
        start.headers["location"], data={"sub": subject, "action": "authorize"}
    )
    assert form.status_code == 302, form.text
    assert form.headers["location"].startswith(f"{suite.gateway}/api/auth/mock/callback")
    done = await browser.get(form.headers["location"])
    assert done.status_code == 200, done.text
    tokens: dict[str, Any] = done.json()
    return tokens


@pytest.fixture
async def sign_in_as(suite: Suite) -> AsyncIterator[Any]:
    """Signs in a new provider account; the signed-in user's API client."""
    opened: list[httpx.AsyncClient] = []

    async def signed_in(subject: str) -> SignedIn:
        browser = httpx.AsyncClient(timeout=15)
        opened.append(browser)
        tokens = await sign_in(suite, browser, subject)
        api = httpx.AsyncClient(
            base_url=suite.gateway,
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=15,
        )
        opened.append(api)
        return SignedIn(
            user_id=str(tokens["user_id"]),
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            api=api,
        )

    yield signed_in
    for client in opened:
        await client.aclose()
