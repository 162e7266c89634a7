"""The whole suite as it runs for real, as processes on free ports: an OpenID Connect provider
(oidc-provider-mock), FakePay, every service's API and worker, and the nginx gateway in front,
given the suite's MySQL schemas, broker, S3 and email providers' simulator.

The end-to-end tests, the browser tests, the drill and the load test all start the suite
here, so they run the same thing. `run_suite` is the context manager; `python -m
common.testing.suite --addresses FILE` starts a suite with throwaway schemas of its own,
writes where everything listens as JSON, and runs until it is sent SIGTERM or SIGINT.

The services are one list, SERVICES: a new one joins the suite (schema, API, worker, gateway
upstream) with one entry naming its own settings. This module is test plumbing: it starts the
simulators' processes too, so it is the one place in `common` that knows of `simulators`.
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.testing.gateway import GatewayConfig, start_gateway
from common.testing.plugin import (
    create_database,
    drop_database,
    migrate_schema,
    stop_all,
)
from common.testing.s3 import S3Server
from common.testing.servers import find_kafka, find_mysql, free_port, wait_for_port
from simulators.mail_testing import MailProvidersServer

REPOSITORY = Path(__file__).resolve().parents[5]

# The bucket the invoice service stores its PDFs in (its default name).
PDF_BUCKET = "ledgerline-invoices"


@dataclass(frozen=True)
class Addresses:
    """Where everything of the suite listens, known before anything starts."""

    gateway: str
    provider: str
    fakepay: str
    # The email providers' simulator (SendGrid's API) and the key its webhooks are signed with.
    mail: str = ""
    mail_webhook_key: str = ""
    # Each service's first API replica, by service name.
    apis: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Service:
    """One service of the suite, run the way every service is laid out: the API is
    `<module>.main:create_app`, the worker `python -m <module>.worker` (the module is the
    name unless `package` says otherwise), the schema is named by
    `<NAME>_DATABASE_URL` and migrated with `services/<name>/alembic.ini`, and the gateway
    reaches it through `GatewayConfig.<name>_upstream`."""

    name: str
    # The service's own variables, given the suite's addresses (see `Addresses`).
    settings: Callable[[Addresses], dict[str, str]] = lambda _: {}
    # The Python package, when it is not the folder's name (email's is `mailer`).
    package: str = ""

    @property
    def module(self) -> str:
        return self.package or self.name

    @property
    def prefix(self) -> str:
        return self.name.upper()

    @property
    def alembic_ini(self) -> Path:
        return REPOSITORY / "services" / self.name / "alembic.ini"


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


@dataclass
class Child:
    """A process of the suite and how to start it again."""

    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes]


class Processes:
    """The suite's processes by name (`invoice-api`, `invoice-api-2`, `invoice-worker`,
    `fakepay`, `provider`, `gateway` ...), each logging to `<logs>/<name>.log`, stopped in
    reverse order. A drill kills one and starts it again by name."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: dict[str, Child] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.children[name] = Child(command, env, process)

    def adopt(self, name: str, process: subprocess.Popen[bytes]) -> None:
        """A process started elsewhere (the gateway) that stops with the suite; `restart`
        runs its command again (nginx's configuration stays where it was written)."""
        args = process.args
        command = [str(arg) for arg in args] if isinstance(args, list | tuple) else []
        self.children[name] = Child(command, dict(os.environ), process)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        child = self.children[name]
        child.process.send_signal(sig)
        child.process.wait(30)

    def restart(self, name: str) -> None:
        """Start a stopped (or killed) process again with its command and environment."""
        child = self.children[name]
        if child.process.poll() is None:
            raise RuntimeError(f"{name} is still running")
        if not child.command:
            raise RuntimeError(f"{name} was not started by the suite and cannot be restarted")
        self.start(name, child.command, child.env)

    def names(self, kind: str = "") -> list[str]:
        """Every process's name, or those whose name contains `kind` (`-api`, `-worker`)."""
        return [name for name in self.children if kind in name]

    def stop_all(self) -> None:
        children = list(self.children.values())
        for child in reversed(children):
            if child.process.poll() is None:
                child.process.terminate()
        for child in children:
            try:
                child.process.wait(10)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(10)


@dataclass(frozen=True)
class Suite:
    gateway: str
    provider: str
    # FakePay's base URL: `/fakepay` is the provider, `/_control/ledger` what it charged.
    fakepay: str
    # Each service's first API replica, by service name, reached directly (not the gateway).
    apis: dict[str, str]
    kafka_bootstrap: str
    # Every process's log file: `<service>-api.log`, `<service>-worker.log`, `fakepay.log`,
    # `provider.log`, and the gateway's under `gateway/`.
    logs: Path
    # The email providers' simulator: what it accepted, and where it reports deliveries.
    mail: MailProvidersServer
    # Every replica of each service's API, the first one first.
    replicas: dict[str, list[str]] = field(default_factory=dict)
    # Each service's schema, by service name.
    databases: dict[str, str] = field(default_factory=dict)
    processes: Processes | None = None
    # Each worker's Prometheus metrics, by process name (`invoice-worker`, ...).
    worker_metrics: dict[str, str] = field(default_factory=dict)

    @property
    def user_api(self) -> str:
        return self.apis["user"]

    @property
    def invoice_api(self) -> str:
        return self.apis["invoice"]

    @property
    def payment_api(self) -> str:
        return self.apis["payment"]

    def addresses(self) -> dict[str, Any]:
        """What a program outside Python (a browser test, a load generator) needs to know."""
        return {
            "gateway": self.gateway,
            "provider": self.provider,
            "fakepay": self.fakepay,
            "mail": self.mail.url,
            "apis": self.apis,
            "replicas": self.replicas,
            "kafka_bootstrap": self.kafka_bootstrap,
            "databases": self.databases,
            "worker_metrics": self.worker_metrics,
            "logs": str(self.logs),
        }


def uvicorn(factory: str, port: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "uvicorn", "--factory", factory),
        *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
    ]


def replica_name(service: str, role: str, replica: int) -> str:
    """`invoice-api` for the first replica, `invoice-api-2` for the second, and so on."""
    return f"{service}-{role}" + (f"-{replica}" if replica > 1 else "")


@contextlib.contextmanager
def run_suite(
    *,
    databases: dict[str, str],
    kafka_bootstrap: str,
    storage: S3Server,
    mail: MailProvidersServer,
    logs: Path,
    replicas: int = 1,
    gateway: dict[str, Any] | None = None,
    environment: Callable[[str], dict[str, str]] | None = None,
) -> Iterator[Suite]:
    """Start the suite and stop it when the block ends.

    `databases` are migrated schemas by service name. `replicas` processes of every API and
    every worker run, the gateway balancing over the APIs. `gateway` overrides settings of
    `GatewayConfig` (limits, static root, trusted proxies). `environment(name)` gives extra
    variables for the process of that name, over the suite's own: a drill points a service at
    a fault proxy with it.
    """
    ports = {name: free_port() for name in ("gateway", "provider", "fakepay")}
    api_ports = {service.name: [free_port() for _ in range(replicas)] for service in SERVICES}
    at = Addresses(
        gateway=f"http://127.0.0.1:{ports['gateway']}",
        provider=f"http://127.0.0.1:{ports['provider']}",
        fakepay=f"http://127.0.0.1:{ports['fakepay']}",
        mail=mail.url,
        mail_webhook_key=mail.keys()["sendgrid_public_key"],
        apis={name: f"http://127.0.0.1:{ports_[0]}" for name, ports_ in api_ports.items()},
    )
    shared = {
        **os.environ,
        "ENVIRONMENT": "test",
        "LOG_FORMAT": "json",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AUTH_JWKS_URL": f"{at.apis['user']}/.well-known/jwks.json",
        # AWS_ENDPOINT_URL and moto's placeholder credentials, for every service's boto3.
        **storage.environment(),
    }

    def env_for(name: str, own: dict[str, str]) -> dict[str, str]:
        return {**shared, **own, **(environment(name) if environment else {})}

    processes = Processes(logs)
    worker_metrics: dict[str, str] = {}
    try:
        provider = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1"]
        processes.start(
            "provider",
            [*provider, "--port", str(ports["provider"])],
            env_for("provider", {}),
        )
        fakepay = [sys.executable, "-m", "simulators.fakepay", "--host", "127.0.0.1"]
        processes.start(
            "fakepay", [*fakepay, "--port", str(ports["fakepay"])], env_for("fakepay", {})
        )
        for service in SERVICES:
            own = {
                f"{service.prefix}_DATABASE_URL": databases[service.name],
                **service.settings(at),
            }
            for replica, port in enumerate(api_ports[service.name], start=1):
                name = replica_name(service.name, "api", replica)
                api = uvicorn(f"{service.module}.main:create_app", port)
                processes.start(name, api, env_for(name, own))
                name = replica_name(service.name, "worker", replica)
                worker = [sys.executable, "-m", f"{service.module}.worker"]
                # Each worker serves its metrics on a port of its own.
                metrics_port = free_port()
                worker_metrics[name] = f"http://127.0.0.1:{metrics_port}/metrics"
                worker_env = {**own, "METRICS_PORT": str(metrics_port)}
                processes.start(name, worker, env_for(name, worker_env))
        all_api_ports = [port for ports_ in api_ports.values() for port in ports_]
        for port in (ports["provider"], ports["fakepay"], *all_api_ports):
            # Generous: a dozen or two Python processes start at once on a small, shared
            # machine, each importing its packages before it binds.
            wait_for_port("127.0.0.1", port, timeout=300)
        upstreams: dict[str, Any] = {
            f"{name}_upstream": " ".join(f"127.0.0.1:{port}" for port in ports_)
            for name, ports_ in api_ports.items()
        }
        gateway_settings: dict[str, Any] = {
            # Paying has its own tight budget per client address; every test here comes from
            # 127.0.0.1, so the suite's gateway allows it more than one user would need. The
            # fuzzer sends all its requests with one token: that budget is the address's too.
            "pay_rate": "50r/s",
            "pay_burst": 100,
            "user_rate": "50r/s",
            "user_burst": 100,
            # Sign-ins and refreshes too: the stateful fuzzer refreshes and signs out at will.
            "auth_rate": "50r/s",
            "auth_burst": 100,
            **(gateway or {}),
        }
        processes.adopt(
            "gateway",
            start_gateway(
                GatewayConfig(port=ports["gateway"], **upstreams, **gateway_settings),
                logs / "gateway",
            ),
        )
        yield Suite(
            gateway=at.gateway,
            provider=at.provider,
            fakepay=at.fakepay,
            apis=at.apis,
            kafka_bootstrap=kafka_bootstrap,
            logs=logs,
            mail=mail,
            replicas={
                name: [f"http://127.0.0.1:{port}" for port in ports_]
                for name, ports_ in api_ports.items()
            },
            databases=databases,
            processes=processes,
            worker_metrics=worker_metrics,
        )
    finally:
        processes.stop_all()


def migrated_schemas(server: Any, prefix: str) -> dict[str, str]:
    """A new, migrated schema per service (`<prefix>_<service>_<random>`), by service name."""
    urls = {}
    for service in SERVICES:
        url = asyncio.run(create_database(server, f"{prefix}_{service.name}"))
        urls[service.name] = url
        migrate_schema(service.alembic_ini, service.prefix, url)
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--logs", type=Path, help="log folder (a new temporary one if absent)")
    parser.add_argument("--static-root", type=Path, help="what the gateway serves at /")
    parser.add_argument("--rate-limits", choices=("suite", "production"), default="suite")
    arguments = parser.parse_args()

    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    logs = arguments.logs or Path(tempfile.mkdtemp(prefix="ledgerline-suite-"))
    logs.mkdir(parents=True, exist_ok=True)
    gateway: dict[str, Any] = {}
    if arguments.static_root:
        gateway["static_root"] = arguments.static_root.resolve()
    if arguments.rate_limits == "production":
        gateway.update({field_: getattr(GatewayConfig, field_) for field_ in _LIMITS})

    stack: list[Any] = []
    server = find_mysql(stack)
    databases: dict[str, str] = {}
    try:
        databases = migrated_schemas(server, "suite")
        kafka = find_kafka(stack)
        with (
            S3Server() as storage,
            MailProvidersServer() as mail,
        ):
            storage.client().create_bucket(Bucket=PDF_BUCKET)
            with run_suite(
                databases=databases,
                kafka_bootstrap=kafka,
                storage=storage,
                mail=mail,
                logs=logs,
                replicas=arguments.replicas,
                gateway=gateway,
            ) as suite:
                arguments.addresses.write_text(json.dumps(suite.addresses(), indent=2))
                print(f"suite up: {suite.gateway} (addresses in {arguments.addresses})", flush=True)
                stopped.wait()
    finally:
        for url in databases.values():
            asyncio.run(drop_database(server, url.rsplit("/", 1)[1]))
        stop_all(stack)


# The gateway's per-user, paying and sign-in budgets, which the suite loosens for its tests.
_LIMITS = ("pay_rate", "pay_burst", "user_rate", "user_burst", "auth_rate", "auth_burst")


if __name__ == "__main__":
    main()
