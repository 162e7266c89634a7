"""The whole suite as it runs for real: an OpenID Connect provider (oidc-provider-mock),
FakePay, every service's API and worker as processes, and the nginx gateway in front. Tests
act as browsers and API clients against the gateway only.

The services are one list, SERVICES: a new one joins the suite (schema, API, worker, gateway
upstream, `suite.apis`) with one entry naming its own settings.
"""

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.testing.gateway import GatewayConfig, start_gateway
from common.testing.plugin import migrate_schema, stop_all, temporary_database
from common.testing.s3 import S3Server
from common.testing.servers import MysqlServer, find_kafka, free_port, wait_for_port
from simulators.mail_testing import MailProvidersServer

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Service:
    """One service of the suite, run the way every service is laid out: the API is
    `<module>.main:create_app`, the worker `python -m <module>.worker` (the module is the
    name unless `package` says otherwise), the schema is named by
    `<NAME>_DATABASE_URL` and migrated with `services/<name>/alembic.ini`, and the gateway
    reaches it through `GatewayConfig.<name>_upstream`."""

    name: str
    # The service's own variables, given the suite's addresses (see `Addresses`).
    settings: Callable[["Addresses"], dict[str, str]] = lambda _: {}
    # The Python package, when it is not the folder's name (email's is `mailer`).
    package: str = ""

    @property
    def module(self) -> str:
        return self.package or self.name

    @property
    def prefix(self) -> str:
        return self.name.upper()


@dataclass(frozen=True)
class Addresses:
    """Where everything of the suite listens, known before anything starts."""

    gateway: str
    provider: str
    fakepay: str
    # The email providers' simulator (SendGrid's API) and the key its webhooks are signed with.
    mail: str = ""
    mail_webhook_key: str = ""
    apis: dict[str, str] = field(default_factory=dict)


SERVICES = [
    Service(
        "user",
        lambda at: {
            "USER_PUBLIC_BASE_URL": at.gateway,
            "USER_SECRET_KEY": "e2e-secret-key-for-sealing",
            "USER_OIDC_PROVIDERS": json.dumps(
                {
                    "mock": {
                        "issuer": at.provider,
                        "client_id": "ledgerline-e2e",
                        "client_secret": "e2e-client-secret",
                    }
                }
            ),
        },
    ),
    Service(
        "invoice",
        lambda at: {
            "INVOICE_CURSOR_SECRET": "e2e-cursor-secret",
            "INVOICE_PAYMENT_API_URL": at.apis["payment"],
        },
    ),
    Service(
        "payment",
        lambda at: {
            "PAYMENT_CURSOR_SECRET": "e2e-cursor-secret",
            "PAYMENT_FAKEPAY_URL": f"{at.fakepay}/fakepay",
        },
    ),
    Service(
        "email",
        # SendGrid's API, played by the providers' simulator; the PDFs from the suite's S3
        # (AWS_ENDPOINT_URL). Failover among providers is the email service's own tests' work.
        lambda at: {
            "EMAIL_CURSOR_SECRET": "e2e-cursor-secret",
            "EMAIL_PROVIDERS": "sendgrid",
            "EMAIL_SENDGRID_URL": at.mail,
            "EMAIL_SENDGRID_WEBHOOK_PUBLIC_KEY": at.mail_webhook_key,
        },
        package="mailer",
    ),
    Service(
        "sync",
        lambda at: {
            # A fixed test key (32 bytes, base64): the suite's connections are sealed with it.
            "SYNC_CONNECTION_KEY": "e2e:ZTJlLXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmctLS0tLS0=",
            "SYNC_ALLOWED_PLATFORM_HOSTS": "127.0.0.1",
        },
    ),
]


@dataclass(frozen=True)
class Suite:
    gateway: str
    provider: str
    # FakePay's base URL: `/fakepay` is the provider, `/_control/ledger` what it charged.
    fakepay: str
    # Each service's API, by service name, reached directly (not through the gateway).
    apis: dict[str, str]
    kafka_bootstrap: str
    # Every process's log file: `<service>-api.log`, `<service>-worker.log`, `fakepay.log`,
    # `provider.log`, and the gateway's under `gateway/`.
    logs: Path
    # The email providers' simulator: what it accepted, and where it reports deliveries.
    mail: MailProvidersServer

    @property
    def user_api(self) -> str:
        return self.apis["user"]

    @property
    def invoice_api(self) -> str:
        return self.apis["invoice"]

    @property
    def payment_api(self) -> str:
        return self.apis["payment"]


class Processes:
    """Children of the test session, each logging to its own file, stopped in reverse."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.children.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            )

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.terminate()
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


def uvicorn(factory: str, port: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "uvicorn", "--factory", factory),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
    ]


@pytest.fixture(scope="session")
async def databases(mysql_server: MysqlServer) -> AsyncIterator[dict[str, str]]:
    """A migrated throwaway schema per service, by service name."""
    async with contextlib.AsyncExitStack() as stack:
        urls = {}
        for service in SERVICES:
            url = await stack.enter_async_context(
                temporary_database(mysql_server, f"e2e_{service.name}")
            )
            alembic_ini = REPOSITORY / "services" / service.name / "alembic.ini"
            migrate_schema(alembic_ini, service.prefix, url)
            urls[service.name] = url
        yield urls


# The bucket the invoice service stores its PDFs in (its default name).
PDF_BUCKET = "ledgerline-invoices"


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
    stack: list[Any] = []
    try:
        yield find_kafka(stack)
    finally:
        stop_all(stack)


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
    ports = {name: free_port() for name in ("gateway", "provider", "fakepay")}
    api_ports = {service.name: free_port() for service in SERVICES}
    at = Addresses(
        gateway=f"http://127.0.0.1:{ports['gateway']}",
        provider=f"http://127.0.0.1:{ports['provider']}",
        fakepay=f"http://127.0.0.1:{ports['fakepay']}",
        mail=mail_providers.url,
        mail_webhook_key=mail_providers.keys()["sendgrid_public_key"],
        apis={name: f"http://127.0.0.1:{port}" for name, port in api_ports.items()},
    )
    shared = {
        **os.environ,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "json",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AUTH_JWKS_URL": f"{at.apis['user']}/.well-known/jwks.json",
        # AWS_ENDPOINT_URL and moto's placeholder credentials, for every service's boto3.
        **object_storage.environment(),
    }
    logs = tmp_path_factory.mktemp("suite-logs")
    processes = Processes(logs)
    try:
        provider_command = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1"]
        processes.start(
            "provider", [*provider_command, "--port", str(ports["provider"])], dict(os.environ)
        )
        fakepay_command = [sys.executable, "-m", "simulators.fakepay", "--host", "127.0.0.1"]
        processes.start(
            "fakepay", [*fakepay_command, "--port", str(ports["fakepay"])], dict(os.environ)
        )
        for service in SERVICES:
            env = {
                **shared,
                f"{service.prefix}_DATABASE_URL": databases[service.name],
                **service.settings(at),
            }
            api = uvicorn(f"{service.module}.main:create_app", api_ports[service.name])
            processes.start(f"{service.name}-api", api, env)
            worker = [sys.executable, "-m", f"{service.module}.worker"]
            processes.start(f"{service.name}-worker", worker, env)
        for port in (ports["provider"], ports["fakepay"], *api_ports.values()):
            # Generous: a dozen Python processes start at once on a small, shared machine.
            wait_for_port("127.0.0.1", port, timeout=120)
        upstreams = {f"{name}_upstream": f"127.0.0.1:{port}" for name, port in api_ports.items()}
        gateway_process = start_gateway(
            # Paying has its own tight budget per client address; every test here comes from
            # 127.0.0.1, so the suite's gateway allows it more than one user would need. The
            # fuzzer sends all its requests with one token: that budget is the address's too.
            GatewayConfig(
                port=ports["gateway"],
                pay_rate="50r/s",
                pay_burst=100,
                user_rate="50r/s",
                user_burst=100,
                **upstreams,
            ),
            logs / "gateway",
        )
        processes.children.append(gateway_process)
        yield Suite(
            gateway=at.gateway,
            provider=at.provider,
            fakepay=at.fakepay,
            apis=at.apis,
            kafka_bootstrap=kafka_bootstrap,
            logs=logs,
            mail=mail_providers,
        )
    finally:
        processes.stop_all()


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
