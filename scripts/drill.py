"""The fault drill: the whole suite under traffic from many owners while processes die and
dependencies go away; then every record is reconciled against what was accepted.

    .venv/bin/python scripts/drill.py [--duration 180] [--owners 24] [--run-dir .run/drill]

(`make drill`, `DURATION=30 make drill`). It starts its own MariaDB, a durable dev broker
over a disk S3 server, the simulators, every service's API and worker and the gateway, all on
free ports, with a `FaultProxy` between each service and MySQL, between everything and the
broker, and between the services and FakePay, the email providers (SES and SMTP among them)
and the billing platform. It prints one table and exits 1 if anything accepted was lost or
doubled, a backlog is stuck or an event was dead-lettered. What it checks and what it found:
docs/reliability.md.
"""

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import random
import re
import shutil
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from common.testing.durable import S3_KEY, DiskS3, DurableBroker, PrivateMariadb
from common.testing.fault_proxy import FaultProxy
from common.testing.faults import (
    Fault,
    FaultSchedule,
    billing_platform_outage,
    fakepay_outage,
    kill_and_restart,
    mail_provider_outage,
    proxy_down,
    proxy_latency,
    proxy_resets,
    stop_and_restart,
)
from common.testing.s3 import S3Server
from common.testing.servers import free_port
from common.testing.suite import Processes, Suite, run_suite
from simulators.billing_platform_testing import BillingPlatformServer
from simulators.mail_testing import MailProvidersServer, SmtpSinkServer

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# service name -> (python package, schema)
SERVICES = {
    "user": "user",
    "invoice": "invoice",
    "payment": "payment",
    "email": "mailer",
    "sync": "sync",
}
PDF_BUCKET = "ledgerline-invoices"
BROKER_BUCKET = "tansu"
# The email providers with an HTTP API at the providers' simulator, which can be asked
# whether they took a message; then SES (moto's server) and SMTP (the sink), which cannot.
MAIL_PROVIDERS = ("sendgrid", "mailgun", "sparkpost")
EMAIL_PROVIDERS = (*MAIL_PROVIDERS, "ses", "smtp")
# What the email service sends from; SES refuses a sender it has not verified.
EMAIL_SENDER = "invoices@ledgerline.example"
# A send in doubt at SES or SMTP waits this long for a delivery report before it is sent
# again (15 minutes in production): short enough for a drill of minutes.
UNVERIFIABLE_WAIT_SECONDS = 10
# Test cards (docs/fakepay.md): the last four digits decide.
GOOD_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
BOUNCE_DOMAIN = "bounce.drill.example"


def log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


# --- the suite --------------------------------------------------------------------------------


class Phases:
    """How long each stage of the drill took, in order, for the report."""

    def __init__(self) -> None:
        self.mark = time.monotonic()
        self.took: dict[str, float] = {}

    def end(self, name: str) -> None:
        now = time.monotonic()
        self.took[name] = now - self.mark
        self.mark = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.took.items())


class SuiteProcess:
    """One process of the shared suite (common.testing.suite), as the fault schedule sees it."""

    def __init__(self, processes: Processes, name: str) -> None:
        self.processes = processes
        self.name = name

    def kill(self) -> None:
        # A process's own children die with it, as they would with their container: nginx's
        # workers would otherwise keep the gateway's port and serve on without a master.
        child = self.processes.children[self.name].process
        orphans = children_of(child.pid)
        self.processes.kill(self.name)
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self.processes.kill(self.name, signal.SIGTERM)

    def start(self) -> None:
        if self.processes.children[self.name].process.poll() is not None:
            self.processes.restart(self.name)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields follow it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@dataclass
class Stack:
    run_dir: Path
    db: PrivateMariadb
    s3: DiskS3
    broker: DurableBroker
    broker_proxy: FaultProxy
    db_proxies: dict[str, FaultProxy]
    fakepay_proxy: FaultProxy
    mail_proxy: FaultProxy
    platform_proxy: FaultProxy
    ses_proxy: FaultProxy
    smtp_proxy: FaultProxy
    mail_server: MailProvidersServer
    platform_server: BillingPlatformServer
    ses_server: S3Server  # moto's server, for SES only
    smtp_sink: SmtpSinkServer
    urls: dict[str, str] = field(default_factory=dict)  # service -> direct database URL
    suite: Suite | None = None
    suite_context: Any = None

    @property
    def running(self) -> Suite:
        assert self.suite is not None, "the suite is not started"
        return self.suite

    @property
    def gateway(self) -> str:
        return self.running.gateway

    @property
    def fakepay(self) -> str:
        return self.running.fakepay

    @property
    def mail(self) -> str:
        return self.mail_server.url

    @property
    def platform(self) -> str:
        return self.platform_server.base_url

    def processes(self, names: tuple[str, ...] = ("-api", "-worker")) -> dict[str, SuiteProcess]:
        """The suite's processes whose names end so (every API and worker), by name."""
        processes = self.running.processes
        assert processes is not None
        return {
            name: SuiteProcess(processes, name)
            for name in processes.names()
            if name.endswith(names)
        }

    def overrides(self, name: str) -> dict[str, str]:
        """What the drill changes in the suite's environment for one process: providers
        through their fault proxies, and shorter timings so that recovery fits in a drill."""
        if name.startswith("payment-"):
            return {
                "PAYMENT_FAKEPAY_URL": f"http://{self.fakepay_proxy.address}/fakepay",
                "PAYMENT_PROVIDER_TIMEOUT_SECONDS": "5",
                "PAYMENT_RECONCILE_EVERY_SECONDS": "2",
                # Daily, so the drill's run (for tomorrow, by the command) is its own.
                "PAYMENT_BILLING_SCHEDULE": "0 0 * * *",
                "PAYMENT_BILLING_TICK_SECONDS": "2",
            }
        if name.startswith("email-"):
            proxy = f"http://{self.mail_proxy.address}"
            keys = self.mail_server.keys()
            return {
                "EMAIL_PROVIDERS": ",".join(EMAIL_PROVIDERS),
                "EMAIL_SENDGRID_URL": proxy,
                "EMAIL_MAILGUN_URL": proxy,
                "EMAIL_SPARKPOST_URL": proxy,
                "EMAIL_SENDGRID_WEBHOOK_PUBLIC_KEY": keys["sendgrid_public_key"],
                "EMAIL_MAILGUN_WEBHOOK_SIGNING_KEY": keys["mailgun_signing_key"],
                "EMAIL_S3_ENDPOINT_URL": self.s3.endpoint_url,
                # The email service signs its S3 requests with keys of its own settings.
                "EMAIL_AWS_ACCESS_KEY_ID": S3_KEY,
                "EMAIL_AWS_SECRET_ACCESS_KEY": S3_KEY,
                "EMAIL_PROVIDER_TIMEOUT_SECONDS": "4",
                "EMAIL_IN_DOUBT_GRACE_SECONDS": "2",
                "EMAIL_RETRY_BASE_SECONDS": "1",
                "EMAIL_RETRY_MAX_SECONDS": "5",
                "EMAIL_BREAKER_TTL_SECONDS": "5",
                **self.unverifiable_providers(),
            }
        if name.startswith("sync-"):
            return {
                "SYNC_MANUAL_RUN_INTERVAL_SECONDS": "5",
                "SYNC_RETRY_FOR_SECONDS": "10",
                "SYNC_PARK_BASE_SECONDS": "3",
                "SYNC_PARK_MAX_SECONDS": "10",
                "SYNC_BREAKER_OPEN_SECONDS": "5",
                "SYNC_LEASE_SECONDS": "15",
                "SYNC_RECOVER_EVERY_SECONDS": "2",
            }
        return {}

    def unverifiable_providers(self) -> dict[str, str]:
        """SES (moto's server) and SMTP (the sink) behind their fault proxies, SES's delivery
        reports signed as SNS signs them (by the providers' simulator), and a short wait for
        a send in doubt at either."""
        return {
            "EMAIL_SES_ENDPOINT_URL": f"http://{self.ses_proxy.address}",
            "EMAIL_SMTP_HOST": "127.0.0.1",
            "EMAIL_SMTP_PORT": str(self.smtp_proxy.port),
            "EMAIL_FROM_EMAIL": EMAIL_SENDER,
            "EMAIL_SNS_CERTIFICATE_URL_PREFIXES": f"{self.mail}/sns/",
            "EMAIL_UNVERIFIABLE_WAIT_SECONDS": str(UNVERIFIABLE_WAIT_SECONDS),
        }

    def service_env(self, service: str) -> dict[str, str]:
        """A service's whole environment, as its processes in the suite have it."""
        processes = self.running.processes
        assert processes is not None
        return dict(processes.children[f"{service}-worker"].env)


async def build_stack(run_dir: Path) -> Stack:
    """Every server the drill owns, on free ports, nothing started yet but the fault proxies
    (the FakePay proxy learns its target once the suite has started FakePay)."""
    db = PrivateMariadb(run_dir / "db")
    s3 = DiskS3(run_dir / "s3", [BROKER_BUCKET, PDF_BUCKET])
    broker_port = free_port()
    broker = DurableBroker(run_dir, s3, BROKER_BUCKET, advertised_port=broker_port)
    broker_proxy = await FaultProxy(
        "127.0.0.1", broker.port, port=broker_port, name="broker"
    ).start()
    db_proxies = {
        service: await FaultProxy("127.0.0.1", db.port, name=f"{service}->mysql").start()
        for service in SERVICES
    }
    mail_server = MailProvidersServer()
    platform_server = BillingPlatformServer()
    ses_server = S3Server()
    smtp_sink = SmtpSinkServer()
    return Stack(
        run_dir,
        db,
        s3,
        broker,
        broker_proxy,
        db_proxies,
        await FaultProxy("127.0.0.1", 9, name="payment->fakepay").start(),
        await FaultProxy("127.0.0.1", mail_server.port, name="email->providers").start(),
        await FaultProxy("127.0.0.1", platform_server.port, name="sync->platform").start(),
        await FaultProxy("127.0.0.1", ses_server.port, name="email->ses").start(),
        await FaultProxy("127.0.0.1", smtp_sink.port, name="email->smtp").start(),
        mail_server,
        platform_server,
        ses_server,
        smtp_sink,
    )


async def start_stack(stack: Stack, phases: Phases) -> None:
    logs = stack.run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log("starting MariaDB, the S3 server, the broker and the simulators")
    await asyncio.gather(
        asyncio.to_thread(stack.db.start),
        asyncio.to_thread(stack.s3.start),
        asyncio.to_thread(stack.mail_server.start),
        asyncio.to_thread(stack.platform_server.start),
        asyncio.to_thread(stack.ses_server.start),
        asyncio.to_thread(stack.smtp_sink.start),
    )
    stack.ses_server.client("ses").verify_email_identity(EmailAddress=EMAIL_SENDER)
    await asyncio.to_thread(stack.db.wait_ready)
    await asyncio.to_thread(stack.broker.start)
    phases.end("servers")

    log("creating the schemas and migrating them")
    urls = await asyncio.gather(
        *(
            asyncio.to_thread(stack.db.provision, f"{service}_svc", f"drill-{service}-password")
            for service in SERVICES
        )
    )
    stack.urls.update(zip(SERVICES, urls, strict=True))
    await asyncio.to_thread(migrate_all, stack.urls)
    through_proxies = {
        service: url.replace(f":{stack.db.port}/", f":{stack.db_proxies[service].port}/")
        for service, url in stack.urls.items()
    }

    phases.end("schemas")
    log("starting every API and worker and the gateway (common.testing.suite)")
    stack.suite_context = run_suite(
        databases=through_proxies,
        kafka_bootstrap=stack.broker.bootstrap,
        storage=stack.s3,  # type: ignore[arg-type]  # the same environment() as moto's
        mail=stack.mail_server,
        logs=logs,
        # Every drill owner comes from 127.0.0.1: one address's budgets must carry them all.
        gateway={
            "api_rate": "400r/s",
            "api_burst": 400,
            "auth_rate": "50r/s",
            "auth_burst": 100,
            "pay_rate": "100r/s",
            "pay_burst": 200,
            "user_rate": "100r/s",
            "user_burst": 200,
        },
        environment=stack.overrides,
    )
    stack.suite = await asyncio.to_thread(stack.suite_context.__enter__)
    fakepay_port = int(stack.suite.fakepay.rsplit(":", 1)[1])
    stack.fakepay_proxy.target = ("127.0.0.1", fakepay_port)
    async with httpx.AsyncClient(timeout=10) as http:
        # Delivery reports straight to the email API (the gateway's /webhooks/ route is the
        # same service); the simulator retries a report a few times if the API is down.
        await http.put(
            f"{stack.mail}/_control/webhook-target",
            json={"url": f"{stack.suite.apis['email']}/webhooks"},
        )
        for provider in MAIL_PROVIDERS:
            await http.post(f"{stack.mail}/_control/faults", json=bounce_fault(provider))
    phases.end("suite")


def ses_sent(stack: Stack) -> list[tuple[str, str, list[str]]]:
    """What SES (moto's server) took: (SES's message id, our send id, recipients), from moto's
    own record of its state (`/moto-api/data.json`)."""
    with httpx.Client(timeout=30) as http:
        state = http.get(f"{stack.ses_server.endpoint_url}/moto-api/data.json").json()
    taken = []
    for raw in state.get("ses", {}).get("RawMessage", []):
        head = str(raw.get("raw_data", "")).split("\n\n", 1)[0]
        found = re.search(r"^X-Ledgerline-Send-Id:\s*(\S+)", head, re.MULTILINE | re.IGNORECASE)
        taken.append((str(raw["id"]), found.group(1) if found else "", list(raw["destinations"])))
    return taken


async def report_ses_deliveries(stack: Stack, stop: asyncio.Event) -> None:
    """What SES does with delivery notifications on: each message it took is reported, signed
    as SNS signs (by the providers' simulator), to the email service's SES webhook; a report
    the service did not take (its API down) is posted again, as SNS retries."""
    reported: set[str] = set()
    async with httpx.AsyncClient(timeout=10) as http:
        while not stop.is_set():
            try:
                taken = await asyncio.to_thread(ses_sent, stack)
            except httpx.HTTPError:
                taken = []
            for ses_id, send_id, recipients in taken:
                if ses_id in reported or not send_id:
                    continue
                bounced = any(BOUNCE_DOMAIN in r for r in recipients)
                try:
                    answer = await http.post(
                        f"{stack.mail}/_control/webhooks",
                        json={
                            "provider": "ses",
                            "url": f"{stack.running.apis['email']}/webhooks/ses",
                            "send_id": send_id,
                            "provider_message_id": ses_id,
                            "event": "bounce" if bounced else "delivered",
                        },
                    )
                except httpx.HTTPError:
                    continue
                if answer.status_code == 200 and answer.json()["status"] < 300:
                    reported.add(ses_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def bounce_fault(provider: str) -> dict[str, Any]:
    """The simulator bounces every message to this provider's bouncing address."""
    return {"provider": provider, "mode": "bounce", "recipient": f"nobody@{BOUNCE_DOMAIN}"}


def migrate_all(urls: dict[str, str]) -> None:
    """Every service's migrations (`alembic upgrade head`), one after the other in this
    process. Five alembic processes would each import SQLAlchemy, pydantic and their service
    again: on a loaded two-core machine that was over a minute of the short drill."""
    # MariaDB's notes on alembic's DDL ("Name 'alembic_version_pkc' ignored"), not problems.
    logging.getLogger("asyncmy").setLevel(logging.ERROR)
    for service, url in urls.items():
        variable = f"{service.upper()}_DATABASE_URL"
        # env.py reads the URL through the service's settings, which are cached.
        get_settings = importlib.import_module(f"{SERVICES[service]}.config").get_settings
        os.environ[variable] = url
        get_settings.cache_clear()
        try:
            config = AlembicConfig(str(ROOT / "services" / service / "alembic.ini"))
            alembic_command.upgrade(config, "head")
        finally:
            del os.environ[variable]
            get_settings.cache_clear()


async def stop_stack(stack: Stack) -> None:
    simulators = (stack.mail_server, stack.platform_server, stack.ses_server, stack.smtp_sink)
    await asyncio.gather(
        *(asyncio.to_thread(server.stop) for server in simulators),
        *(
            [asyncio.to_thread(stack.suite_context.__exit__, None, None, None)]
            if stack.suite_context is not None
            else []
        ),
    )
    for proxy in [
        *stack.db_proxies.values(),
        stack.broker_proxy,
        stack.fakepay_proxy,
        stack.mail_proxy,
        stack.platform_proxy,
        stack.ses_proxy,
        stack.smtp_proxy,
    ]:
        await proxy.stop()
    await asyncio.to_thread(stack.broker.stop, 10)
    await asyncio.to_thread(stack.db.stop, 30)
    await asyncio.to_thread(stack.s3.stop, 10)


# --- the fault schedule -----------------------------------------------------------------------


def drill_schedule(stack: Stack, duration: float, broker_restart: bool = True) -> FaultSchedule:
    """Every API and worker, the gateway and the OIDC mock killed once (SIGKILL, restarted a
    second later); the broker and the database stopped and started again; each provider down
    or slow (every email provider among them); the network between the services and MySQL,
    the broker and the providers slow and lossy. Spread over the first four fifths of
    `duration` after a warm-up, the rest left for recovery under traffic."""
    warmup = min(15.0, duration * 0.1)  # flows under way before anything breaks
    window = duration * 0.8 - warmup
    faults: list[Fault] = []
    # Every API and worker; the gateway (owners meet refused connections and retry) and the
    # OIDC mock (sign-ins wait and start again). Not the simulators: docs/reliability.md.
    processes = stack.processes(("-api", "-worker", "gateway", "provider"))
    names = list(processes)
    random.shuffle(names)
    short = max(2.0, duration / 30)  # an outage: 6 s in the 3-minute drill
    for n, name in enumerate(names):
        at = window * (n + 0.5) / len(names)
        # The front door and the sign-in provider stay down for an outage's length, so that
        # owners meet refused connections (and sign-ins fail) rather than a blink.
        down = short if name in ("gateway", "provider") else 1.0
        faults.append(kill_and_restart(name, processes[name], at, down))
    faults += [
        stop_and_restart("MariaDB", stack.db, 0.55 * window, short, "database", hard=True),
        fakepay_outage(stack.fakepay, 0.10 * window, short, "error"),
        fakepay_outage(stack.fakepay, 0.70 * window, short, "slow", delay=1.5),
        billing_platform_outage(stack.platform, 0.15 * window, short, "error"),
        billing_platform_outage(stack.platform, 0.80 * window, short, "slow", delay=1.0),
    ]
    for n, provider in enumerate(MAIL_PROVIDERS):
        faults.append(
            mail_provider_outage(
                stack.mail,
                provider,
                (0.2 + 0.2 * n) * window,
                short,
                "error" if n != 1 else "timeout",
                delay=6 if n == 1 else 0,
                keep=[bounce_fault(provider)],
            )
        )
    # Every HTTP provider failing at once, so that mail goes to SES and SMTP: SES unreachable
    # for the first half (SMTP carries it), SMTP for the second (SES does).
    every_http = 0.75 * window
    for provider in MAIL_PROVIDERS:
        faults.append(
            mail_provider_outage(
                stack.mail, provider, every_http, 2 * short, keep=[bounce_fault(provider)]
            )
        )
    faults += [
        proxy_down(stack.ses_proxy, every_http, short),
        proxy_down(stack.smtp_proxy, every_http + short, short),
    ]
    db_proxy = list(stack.db_proxies.values())
    faults += [
        proxy_latency(stack.db_proxies["payment"], 0.05 * window, short * 2, ms=80, jitter_ms=40),
        proxy_resets(stack.db_proxies["invoice"], 0.35 * window, short, rate=0.2),
        proxy_resets(random.choice(db_proxy), 0.85 * window, short, rate=0.1),
        proxy_latency(stack.broker_proxy, 0.45 * window, short * 2, ms=60, jitter_ms=30),
        proxy_resets(stack.broker_proxy, 0.65 * window, 1.0, rate=0.0),
        proxy_latency(stack.fakepay_proxy, 0.5 * window, short, ms=400, jitter_ms=200),
        proxy_down(stack.fakepay_proxy, 0.9 * window, short),
        proxy_resets(stack.mail_proxy, 0.3 * window, short, rate=0.3),
        proxy_down(stack.platform_proxy, 0.6 * window, short),
    ]
    if broker_restart:
        # Stopped and started again, as a broker upgrade does; its S3 engine keeps every
        # record it acknowledged (docs/reliability.md, finding 6).
        faults.append(stop_and_restart("broker", stack.broker, 0.25 * window, short, "broker"))
    for fault in faults:
        fault.at += warmup
    return FaultSchedule(faults)


# --- the traffic ------------------------------------------------------------------------------


@dataclass
class Accepted:
    """What the suite told the drill's owners it did (2xx), and what stayed in doubt."""

    clients: list[tuple[str, int, str]] = field(default_factory=list)  # owner, id, name
    invoices: list[tuple[str, str, str]] = field(default_factory=list)  # owner, id, description
    in_doubt: list[tuple[str, str, str]] = field(default_factory=list)  # kind, owner, tag
    paid: list[tuple[str, str]] = field(default_factory=list)  # owner, invoice id
    declined: list[tuple[str, str]] = field(default_factory=list)
    topups: list[tuple[str, str, Decimal]] = field(default_factory=list)  # owner, payment, amount
    sends: list[tuple[str, str, str]] = field(default_factory=list)  # owner, send id, invoice
    methods: list[tuple[str, int]] = field(default_factory=list)  # owner, client
    synced: dict[str, str] = field(default_factory=dict)  # owner -> platform account
    billing_invoices: list[tuple[str, str]] = field(default_factory=list)
    refreshes: int = 0
    sign_ins: int = 0


@dataclass
class Load:
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # 500s: bugs, with their route
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    gave_up: Counter[str] = field(default_factory=Counter)
    # Requests that met a refused or dropped connection (and were tried again), by route.
    connection_errors: Counter[str] = field(default_factory=Counter)


RETRYABLE = {429, 502, 503, 504}


class SignInFailed(Exception):
    """An owner could not sign in within their patience."""


class Owner:
    """One business owner using the suite through the gateway, as a careful client would:
    every create with an Idempotency-Key, retried with the same key after a 429, a 5xx, a
    409 "in progress" or a dropped connection, until `patience` runs out."""

    def __init__(self, n: int, gateway: str, provider: str, accepted: Accepted, load: Load) -> None:
        self.sub = f"drill-owner-{n}-{uuid.uuid4().hex[:6]}@drill.example"
        self.n = n
        self.gateway = gateway
        self.provider = provider
        self.accepted = accepted
        self.load = load
        self.http = httpx.AsyncClient(base_url=gateway, timeout=20)
        self.user_id = ""
        self.access = ""
        self.refresh_token = ""
        self.clients: list[int] = []
        self.pending: list[str] = []  # invoices that may be paid or sent
        self.balance = Decimal(0)
        self.patience = 60.0

    async def close(self) -> None:
        await self.http.aclose()

    async def sign_in(self) -> None:
        deadline = time.monotonic() + self.patience
        while True:
            try:
                async with httpx.AsyncClient(timeout=20) as browser:
                    start = await browser.get(f"{self.gateway}/api/auth/mock/login")
                    if start.status_code == 302:
                        form = await browser.post(
                            start.headers["location"],
                            data={"sub": self.sub, "action": "authorize"},
                        )
                        done = await browser.get(form.headers["location"])
                        self.count("GET /api/auth/mock/callback", done)
                        if done.status_code == 200:
                            tokens = done.json()
                            self.user_id = str(tokens["user_id"])
                            self.access = tokens["access_token"]
                            self.refresh_token = tokens["refresh_token"]
                            self.accepted.sign_ins += 1
                            return
                    else:
                        self.count("GET /api/auth/mock/login", start)
            except httpx.TransportError:
                self.load.connection_errors["sign-in"] += 1
            except KeyError:
                pass
            if time.monotonic() > deadline:
                self.load.gave_up["sign-in"] += 1
                raise SignInFailed(self.sub)
            await asyncio.sleep(1 + random.random())

    async def refresh(self) -> None:
        answer = await self.call(
            "POST",
            "/api/auth/refresh",
            "POST /api/auth/refresh",
            json={"refresh_token": self.refresh_token},
            auth=False,
        )
        if answer is not None and answer.status_code == 200:
            tokens = answer.json()
            self.access = tokens["access_token"]
            self.refresh_token = tokens["refresh_token"]
            self.accepted.refreshes += 1
        elif answer is not None and answer.status_code == 401:
            await self.sign_in()  # a refresh token revoked or spent: sign in again

    def count(self, route: str, answer: httpx.Response) -> None:
        self.load.requests += 1
        self.load.statuses[f"{answer.status_code // 100}xx"] += 1
        if answer.status_code >= 500 and answer.status_code not in RETRYABLE:
            self.load.server_errors.append(f"{route} {answer.status_code} {answer.text[:200]}")

    async def call(
        self,
        method: str,
        path: str,
        route: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        key: str | None = None,
        auth: bool = True,
        retry_conflict: bool = False,
    ) -> httpx.Response | None:
        """The final answer, or None when it never came within `patience`."""
        deadline = time.monotonic() + self.patience
        attempt = 0
        while True:
            headers = {}
            if auth:
                headers["Authorization"] = f"Bearer {self.access}"
            if key:
                headers["Idempotency-Key"] = key
            started = time.monotonic()
            try:
                answer = await self.http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError:
                answer = None
                self.load.connection_errors[route] += 1
            else:
                self.load.latencies.append(time.monotonic() - started)
                self.count(route, answer)
                if answer.status_code == 401 and auth and attempt < 3:
                    await self.refresh()
                elif not (
                    answer.status_code in RETRYABLE
                    # A keyed request still running (or left by a process that died) is 409
                    # until it finishes or its claim runs out: try again.
                    or ((retry_conflict or key) and answer.status_code == 409)
                ):
                    return answer
            attempt += 1
            if time.monotonic() > deadline:
                self.load.gave_up[route] += 1
                return None
            wait = min(5.0, 0.3 * 2 ** min(attempt, 4)) * (0.5 + random.random())
            if answer is not None and answer.headers.get("retry-after", "").isdigit():
                wait = max(wait, min(10.0, float(answer.headers["retry-after"])))
            await asyncio.sleep(wait)

    # The actions.

    async def create_client(self) -> None:
        name = f"Client {self.n}-{uuid.uuid4().hex[:10]}"
        bouncing = random.random() < 0.2
        email = (
            f"nobody@{BOUNCE_DOMAIN}"
            if bouncing
            else f"billing-{uuid.uuid4().hex[:8]}@acme.example"
        )
        answer = await self.call(
            "POST",
            "/api/clients",
            "POST /api/clients",
            json={"name": name, "email": email},
            key=str(uuid.uuid4()),
        )
        if answer is not None and answer.status_code in (200, 201):
            client_id = int(answer.json()["id"])
            self.clients.append(client_id)
            self.accepted.clients.append((self.user_id, client_id, name))
        elif answer is None:
            self.accepted.in_doubt.append(("client", self.user_id, name))

    async def create_invoice(self, due: date | None = None) -> str | None:
        if not self.clients:
            await self.create_client()
            if not self.clients:
                return None
        description = f"drill {uuid.uuid4()}"
        body: dict[str, Any] = {
            "client_id": random.choice(self.clients),
            "description": description,
            "lines": [
                {
                    "description": "Work",
                    "quantity": str(random.randint(1, 5)),
                    "unit_price": f"{random.randint(5, 400)}.{random.randint(0, 99):02d}",
                },
                {"description": "Hosting", "quantity": 1, "unit_price": "9.99"},
            ],
        }
        if due is not None:
            body["due_date"] = due.isoformat()
        answer = await self.call(
            "POST", "/api/invoices", "POST /api/invoices", json=body, key=str(uuid.uuid4())
        )
        if answer is not None and answer.status_code in (200, 201):
            invoice_id = str(answer.json()["id"])
            self.accepted.invoices.append((self.user_id, invoice_id, description))
            return invoice_id
        if answer is None:
            self.accepted.in_doubt.append(("invoice", self.user_id, description))
        return None

    async def list_invoices(self) -> None:
        params = random.choice(
            [
                {"status": "pending"},
                {"status": "paid", "order_by": "client_name"},
                {"order_by": "due_date", "order_dir": "desc", "limit": 20},
                {"client_name": "Client"},
            ]
        )
        await self.call("GET", "/api/invoices", "GET /api/invoices", params=params)

    async def pay(self) -> None:
        if not self.pending:
            invoice = await self.create_invoice()
            if invoice is None:
                return
            self.pending.append(invoice)
        invoice = self.pending.pop(random.randrange(len(self.pending)))
        declining = random.random() < 0.2
        card = {
            "number": DECLINED_CARD if declining else GOOD_CARD,
            "name": "Drill Client",
            "expiry": "01-2040",
        }
        answer = await self.call(
            "POST",
            f"/invoice/pay/{invoice}",
            "POST /invoice/pay/{id}",
            json=card,
            key=str(uuid.uuid4()),
            retry_conflict=True,
        )
        if answer is None:
            self.accepted.in_doubt.append(("payment", self.user_id, invoice))
        elif answer.status_code in (200, 201):
            self.accepted.paid.append((self.user_id, invoice))
        elif answer.status_code == 402:
            self.accepted.declined.append((self.user_id, invoice))
            self.pending.append(invoice)

    async def top_up(self) -> None:
        amount = Decimal(random.choice(["5.00", "10.00", "20.00"]))
        answer = await self.call(
            "POST",
            "/api/wallet/topups",
            "POST /api/wallet/topups",
            json={
                "amount": str(amount),
                "currency": "USD",
                "card": {"number": GOOD_CARD, "name": "Owner Card", "expiry": "01-2040"},
            },
            key=str(uuid.uuid4()),
            retry_conflict=True,
        )
        if answer is not None and answer.status_code in (200, 201):
            self.accepted.topups.append((self.user_id, str(answer.json()["payment"]["id"]), amount))
            self.balance += amount
        elif answer is None:
            self.accepted.in_doubt.append(("topup", self.user_id, ""))

    async def send(self) -> None:
        if self.balance < Decimal("1.00"):
            await self.top_up()
        invoice = self.pending[-1] if self.pending else await self.create_invoice()
        if invoice is None:
            return
        answer = await self.call(
            "POST",
            f"/api/invoices/{invoice}/send",
            "POST /api/invoices/{id}/send",
            json={"message": "Thank you for your business"},
            key=str(uuid.uuid4()),
        )
        if answer is not None and answer.status_code in (200, 201, 202):
            self.accepted.sends.append((self.user_id, str(answer.json()["send_id"]), invoice))
            self.balance -= Decimal("0.50")
        elif answer is None:
            self.accepted.in_doubt.append(("send", self.user_id, invoice))

    async def connect_platform(self, platform: str, platform_proxy: str) -> None:
        async with httpx.AsyncClient(timeout=10) as control:
            created = await control.post(
                f"{platform}/_control/accounts",
                json={"name": f"Owner {self.n}", "clients": 2, "invoices": random.randint(5, 40)},
            )
            account = created.json()
        answer = await self.call(
            "POST",
            "/api/sync/connections",
            "POST /api/sync/connections",
            json={"base_url": f"http://{platform_proxy}", "api_key": account["api_key"]},
        )
        if answer is not None and answer.status_code in (201, 409):
            self.accepted.synced[self.user_id] = str(account["id"])

    async def sync_now(self) -> None:
        await self.call("POST", "/api/sync/runs", "POST /api/sync/runs")

    async def save_card_for_billing(self, due: date) -> None:
        """A client with a saved card and autopay, and an invoice of theirs due by the run."""
        await self.create_client()
        if not self.clients:
            return
        client = self.clients[-1]
        answer = await self.call(
            "POST",
            "/api/payment-methods",
            "POST /api/payment-methods",
            json={
                "client_id": client,
                "autopay_consent": True,
                "card": {
                    "number": random.choice([GOOD_CARD, GOOD_CARD, DECLINED_CARD]),
                    "name": "Autopay Client",
                    "expiry": "01-2040",
                },
            },
            key=str(uuid.uuid4()),
        )
        if answer is None or answer.status_code not in (200, 201):
            return
        self.accepted.methods.append((self.user_id, client))
        saved = self.clients
        self.clients = [client]
        invoice = await self.create_invoice(due=due)
        self.clients = saved
        if invoice is not None:
            self.accepted.billing_invoices.append((self.user_id, invoice))

    async def browse(self) -> None:
        route = random.choice(
            [
                "/api/users/me",
                "/api/wallet",
                "/api/wallet/transactions",
                "/api/payments",
                "/api/emails",
                "/api/sync/status",
                "/api/clients",
            ]
        )
        await self.call("GET", route, f"GET {route}")

    async def act(self) -> None:
        actions = [
            (self.create_client, 2),
            (self.create_invoice, 5),
            (self.list_invoices, 5),
            (self.pay, 4),
            (self.top_up, 2),
            (self.send, 3),
            (self.browse, 4),
            (self.refresh, 1),
            (self.sync_now, 1),
            (self.sign_in, 1),  # a new session, as on another device
        ]
        action = random.choices([a for a, _ in actions], [w for _, w in actions])[0]
        await action()


async def owner_loop(owner: Owner, stop: asyncio.Event, billing_due: date) -> None:
    await owner.sign_in()
    await owner.create_client()
    if owner.n % 3 == 0:
        await owner.save_card_for_billing(billing_due)
    while not stop.is_set():
        try:
            await owner.act()
        except httpx.HTTPError as error:
            owner.load.gave_up[type(error).__name__] += 1
        except SignInFailed:
            pass  # counted; the owner's old tokens still work
        await asyncio.sleep(random.uniform(0.05, 0.3))


# --- draining and reconciling -----------------------------------------------------------------


def uuid_of(raw: bytes) -> str:
    return str(uuid.UUID(bytes=bytes(raw)))


def hex_of(value: str) -> str:
    return uuid.UUID(value).hex


async def rows(engine: AsyncEngine, statement: str, **params: Any) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(text(statement), params)).all())


def consumer_groups() -> dict[str, list[str]]:
    """Every consumer group of the suite and the topics it reads."""
    groups: dict[str, list[str]] = {}
    for package in SERVICES.values():
        consumers = __import__(f"{package}.consumers", fromlist=["TOPICS", "CONSUMER_GROUP"])
        groups[consumers.CONSUMER_GROUP] = list(consumers.TOPICS)
    groups["sync-workers"] = ["sync.jobs"]
    return groups


async def consumer_lags(bootstrap: str) -> dict[str, int]:
    """Each consumer group's lag over its topics: the high watermark seen in a fetch response
    minus the committed offset (the dev broker's ListOffsets can under-report, so not
    end_offsets), summed over partitions."""
    groups = consumer_groups()
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    lags: dict[str, int] = {}
    try:
        all_topics = sorted({t for ts in groups.values() for t in ts})
        await reader.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in all_topics
            for p in sorted(reader.partitions_for_topic(topic) or [])
        ]
        reader.assign(partitions)
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group, topics in groups.items():
            member = AIOKafkaConsumer(
                bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
            )
            await member.start()
            try:
                committed[group] = {
                    tp: (await member.committed(tp)) or 0 for tp in partitions if tp.topic in topics
                }
            finally:
                await member.stop()
        # A fetch from the last record of each partition learns its high watermark.
        for tp in partitions:
            start = max(0, min((c.get(tp, 0) for c in committed.values()), default=0) - 1)
            reader.seek(tp, start)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(
            reader.highwater(tp) is None for tp in partitions
        ):
            await reader.getmany(timeout_ms=500, max_records=1000)
        for group, offsets in committed.items():
            lags[group] = sum(
                (reader.highwater(tp) or 0) - offset for tp, offset in offsets.items()
            )
    finally:
        await reader.stop()
    return lags


@dataclass(frozen=True)
class DeadLetter:
    """One message on a consumer group's dead-letter topic, as common.inbox wrote it: the
    original record's value and key, and headers naming where it came from and why."""

    topic: str
    partition: int
    offset: int
    original: str  # topic/partition/offset of the record the consumer gave up on
    event_type: str
    event_id: str
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.topic}[{self.partition}]@{self.offset}: {self.event_type} {self.event_id}"
            f" from {self.original}, {self.reason}"
        )


def dead_letter_of(record: Any) -> DeadLetter:
    """Read one dead-letter record; an undecodable value (the reason it was dead-lettered,
    perhaps) still gives its place and reason."""
    headers = {name: value.decode(errors="replace") for name, value in record.headers or ()}
    try:
        envelope = json.loads(record.value)
        event_type, event_id = str(envelope["type"]), str(envelope["id"])
    except (ValueError, TypeError, KeyError):
        event_type, event_id = "(undecodable)", "-"
    original = "/".join(
        headers.get(f"x-original-{part}", "?") for part in ("topic", "partition", "offset")
    )
    return DeadLetter(
        record.topic,
        record.partition,
        record.offset,
        original,
        event_type,
        event_id,
        headers.get("x-dead-letter-reason", "(no reason recorded)"),
    )


async def dead_letters(bootstrap: str, topics: list[str], wait: float = 20) -> list[DeadLetter]:
    """Every message on these dead-letter topics, from the start of each partition to its high
    watermark (as a fetch response reports it), oldest first within a partition."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    found: list[DeadLetter] = []
    try:
        await reader.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(reader.partitions_for_topic(topic) or [])
        ]
        if not partitions:
            return found
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        read = dict.fromkeys(partitions, 0)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batches.items():
                found.extend(dead_letter_of(record) for record in records)
                if records:
                    read[tp] = records[-1].offset + 1
            if all(
                reader.highwater(tp) is not None and read[tp] >= (reader.highwater(tp) or 0)
                for tp in partitions
            ):
                break
    finally:
        await reader.stop()
    return sorted(found, key=lambda d: (d.topic, d.partition, d.offset))


def dead_letter_topics() -> list[str]:
    """Each consumer group's dead-letter topic (`<group>.dlt`)."""
    return [f"{group}.dlt" for group in consumer_groups()]


async def backlog(engine: AsyncEngine, bootstrap: str) -> dict[str, int]:
    """What is still on its way: outbox rows, consumer lag, unsettled payments and emails."""
    left: dict[str, int] = {}
    for service in SERVICES:
        outbox = f"SELECT COUNT(*) FROM {service}_svc.outbox_messages"  # noqa: S608 - our names
        (count,) = (await rows(engine, outbox))[0]
        left[f"{service} outbox"] = int(count)
    (count,) = (
        await rows(
            engine,
            "SELECT COUNT(*) FROM payment_svc.payments WHERE status IN ('processing', 'unknown')",
        )
    )[0]
    left["payments unsettled"] = int(count)
    (count,) = (
        await rows(
            engine, "SELECT COUNT(*) FROM email_svc.messages WHERE status IN ('queued', 'sending')"
        )
    )[0]
    left["emails queued or sending"] = int(count)
    try:
        lags = await consumer_lags(bootstrap)
    except Exception as error:  # the broker still coming back: not drained yet
        left[f"consumers ({type(error).__name__})"] = 1
    else:
        for group, lag in lags.items():
            left[f"{group} lag"] = lag
    return left


@dataclass
class Check:
    name: str
    checked: int = 0
    lost: int = 0
    doubled: int = 0
    notes: list[str] = field(default_factory=list)

    def lose(self, note: str) -> None:
        self.lost += 1
        self.notes.append(f"lost: {note}")

    def double(self, note: str) -> None:
        self.doubled += 1
        self.notes.append(f"doubled: {note}")


def dead_letter_check(letters: list[DeadLetter]) -> Check:
    """A dead-lettered event is one a consumer gave up on: its effects never happened. Each
    counts as lost, and its note says which event, from where, and the reason recorded."""
    check = Check("dead letters")
    for letter in letters:
        check.checked += 1
        check.lose(f"dead letter {letter}")
    return check


async def reconcile(
    engine: AsyncEngine, stack: Stack, accepted: Accepted, left: dict[str, int]
) -> list[Check]:
    checks = []

    # Clients and invoices: each 2xx create once; a create in doubt at most once.
    clients = Check("clients created")
    names = Counter(
        name
        for (name,) in await rows(
            engine, "SELECT name FROM invoice_svc.clients WHERE name LIKE 'Client %'"
        )
    )
    for _, _, name in accepted.clients:
        clients.checked += 1
        if names[name] == 0:
            clients.lose(name)
        elif names[name] > 1:
            clients.double(name)
    checks.append(clients)

    invoices = Check("invoices created")
    descriptions = Counter(
        d
        for (d,) in await rows(
            engine, "SELECT description FROM invoice_svc.invoices WHERE description LIKE 'drill %'"
        )
    )
    for _, _, description in accepted.invoices:
        invoices.checked += 1
        if descriptions[description] == 0:
            invoices.lose(description)
        elif descriptions[description] > 1:
            invoices.double(description)
    for kind, _, tag in accepted.in_doubt:
        if kind in ("client", "invoice") and (names if kind == "client" else descriptions)[tag] > 1:
            (clients if kind == "client" else invoices).double(f"{tag} (in doubt)")
    checks.append(invoices)

    # Charges: FakePay's ledger against the payments and the invoices.
    async with httpx.AsyncClient(timeout=30) as http:
        ledger = (await http.get(f"{stack.fakepay}/_control/ledger")).json()
    charges_by_transaction = Counter(entry["transactionId"] for entry in ledger)
    payments = await rows(
        engine,
        "SELECT id, kind, invoice_id, status, transaction_id, owner_id FROM payment_svc.payments",
    )
    # Several attempts may share a transaction id (an invoice paid after a decline): the
    # succeeded one is the one a charge belongs to.
    payment_by_transaction = {}
    for payment in sorted(payments, key=lambda p: p.status == "succeeded"):
        payment_by_transaction[payment.transaction_id] = payment
    invoice_status = {
        uuid_of(i): s for i, s in await rows(engine, "SELECT id, status FROM invoice_svc.invoices")
    }
    charges = Check("card charges (FakePay ledger)")
    charged_invoices: Counter[str] = Counter()
    for transaction, count in charges_by_transaction.items():
        charges.checked += 1
        if count > 1:
            charges.double(f"transaction {transaction} charged {count} times")
        payment = payment_by_transaction.get(transaction)
        if payment is None:
            charges.lose(f"charge {transaction} has no payment")
            continue
        if payment.status != "succeeded":
            charges.lose(f"charge {transaction} but payment {payment.status}")
        if payment.invoice_id is not None:
            invoice = uuid_of(payment.invoice_id)
            charged_invoices[invoice] += 1
            if invoice_status.get(invoice) != "paid":
                charges.lose(f"invoice {invoice} charged but {invoice_status.get(invoice)}")
    checks.append(charges)

    paid = Check("invoices paid (2xx)")
    for _, invoice in accepted.paid:
        paid.checked += 1
        if charged_invoices[invoice] == 0:
            paid.lose(f"invoice {invoice} answered paid, no charge")
        if invoice_status.get(invoice) != "paid":
            paid.lose(f"invoice {invoice} answered paid, is {invoice_status.get(invoice)}")
    for invoice, count in charged_invoices.items():
        if count > 1:
            paid.double(f"invoice {invoice} charged {count} times")
    checks.append(paid)

    billed = Check("billing run")
    runs = await rows(engine, "SELECT status FROM payment_svc.billing_runs")
    items = await rows(
        engine, "SELECT invoice_id, state, outcome FROM payment_svc.billing_run_items"
    )
    billed.checked = len(items)
    for invoice_raw, state, outcome in items:
        if state != "done" and outcome is None:
            billed.lose(f"run item {uuid_of(invoice_raw)} {state}")
    billed.notes.append(
        f"runs: {Counter(r.status for r in runs)}; outcomes: {Counter(i.outcome for i in items)}"
    )
    checks.append(billed)

    # The wallet: balances equal their ledger; each top-up credited once and charged once.
    wallet = Check("wallet top-ups and balances")
    sums = dict(
        await rows(
            engine,
            "SELECT account_id, SUM(amount) FROM payment_svc.wallet_entries GROUP BY account_id",
        )
    )
    for account_id, balance in await rows(
        engine, "SELECT id, balance FROM payment_svc.wallet_accounts"
    ):
        total = sums.get(account_id, 0)
        wallet.checked += 1
        if Decimal(total) != Decimal(balance):
            wallet.lose(f"account {account_id}: balance {balance}, ledger sums to {total}")
    topup_refs = Counter(
        ref
        for (ref,) in await rows(
            engine, "SELECT reference FROM payment_svc.wallet_entries WHERE type = 'topup'"
        )
    )
    for _, payment_id, _ in accepted.topups:
        wallet.checked += 1
        if topup_refs[payment_id] == 0:
            wallet.lose(f"top-up {payment_id} not credited")
        elif topup_refs[payment_id] > 1:
            wallet.double(f"top-up {payment_id} credited {topup_refs[payment_id]} times")
        if charges_by_transaction[payment_id] == 0 and not any(
            p.transaction_id in charges_by_transaction
            for p in payments
            if uuid_of(p.id) == payment_id
        ):
            wallet.lose(f"top-up {payment_id} credited without a charge")
    checks.append(wallet)

    # Emails: each accepted send carried by exactly one provider, or failed (and refunded).
    emails = Check("invoice emails")
    async with httpx.AsyncClient(timeout=30) as http:
        counts = (await http.get(f"{stack.mail}/_control/counts")).json()
    counts["ses"] = Counter(send_id for _, send_id, _ in await asyncio.to_thread(ses_sent, stack))
    counts["smtp"] = await asyncio.to_thread(stack.smtp_sink.counts)
    carried: Counter[str] = Counter()
    for per_provider in counts.values():
        carried.update(per_provider)
    messages = {
        uuid_of(i): s for i, s in await rows(engine, "SELECT id, status FROM email_svc.messages")
    }
    fees = Counter(
        ref
        for (ref,) in await rows(
            engine, "SELECT reference FROM payment_svc.wallet_entries WHERE type = 'fee'"
        )
    )
    refunds = Counter(
        ref
        for (ref,) in await rows(
            engine, "SELECT reference FROM payment_svc.wallet_entries WHERE type = 'refund'"
        )
    )
    for _, send_id, _ in accepted.sends:
        emails.checked += 1
        status = messages.get(send_id)
        if status is None:
            emails.lose(f"send {send_id} never reached the email service")
        elif status == "failed":
            if carried[send_id]:
                emails.double(f"send {send_id} failed but carried {carried[send_id]} times")
        elif status in ("queued", "sending"):
            emails.lose(f"send {send_id} still {status}")
        elif carried[send_id] == 0:
            emails.lose(f"send {send_id} is {status}, no provider has it")
        elif carried[send_id] > 1:
            emails.double(f"send {send_id} carried {carried[send_id]} times")
    for send_id, count in carried.items():
        if count > 1 and send_id not in {s for _, s, _ in accepted.sends}:
            emails.double(f"send {send_id} (in doubt) carried {count} times")
    if any(v > 1 for v in fees.values()) or any(v > 1 for v in refunds.values()):
        emails.double("a fee or a refund taken twice")
    emails.notes.append(
        f"statuses: {Counter(messages.values())}; refunds: {len(refunds)}; carried by: "
        + ", ".join(f"{name} {sum(sent.values())}" for name, sent in counts.items())
    )
    checks.append(emails)

    # Sync: the owners' invoices at the platform are the invoices imported.
    synced = Check("synced invoices")
    async with httpx.AsyncClient(timeout=30) as http:
        for owner, account in accepted.synced.items():
            platform = {
                str(i["id"])
                for i in (
                    await http.get(f"{stack.platform}/_control/accounts/{account}/invoices")
                ).json()
            }
            imported = Counter(
                e
                for (e,) in await rows(
                    engine,
                    "SELECT external_id FROM invoice_svc.invoices"
                    " WHERE owner_id = UNHEX(:o) AND external_id IS NOT NULL",
                    o=hex_of(owner),
                )
            )
            synced.checked += len(platform)
            for missing in platform - set(imported):
                synced.lose(f"owner {owner}: platform invoice {missing} not imported")
            for external, count in imported.items():
                if count > 1:
                    synced.double(f"owner {owner}: {external} imported {count} times")
    checks.append(synced)

    # Backlogs: every outbox empty, every consumer caught up, nothing left unsettled.
    stuck = Check("backlogs drained")
    for what, count in left.items():
        stuck.checked += 1
        if count:
            stuck.lose(f"{what}: {count}")
    checks.append(stuck)
    return checks


# --- the run ----------------------------------------------------------------------------------


async def billing_run(stack: Stack, as_of: date, deadline: float) -> str:
    """`python -m payment.cli billing-run` beside the workers, again until it finishes."""
    env = stack.service_env("payment")
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        done = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "payment.cli",
            "billing-run",
            "--as-of",
            as_of.isoformat(),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await done.communicate()
        (stack.run_dir / "logs" / "billing-run.log").open("ab").write(output)
        if done.returncode == 0:
            return f"billing run finished (attempt {attempts})"
        await asyncio.sleep(2)
    return f"billing run did not finish in {attempts} attempts"


async def final_syncs(owners: list[Owner], accepted: Accepted, since: datetime) -> list[str]:
    """After the faults, each connected owner's sync runs once more to the end."""
    waiting = {o.user_id: o for o in owners if o.user_id in accepted.synced}
    asked: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while waiting and time.monotonic() < deadline:
        for user_id, owner in list(waiting.items()):
            headers = {"Authorization": f"Bearer {owner.access}"}
            try:
                if time.monotonic() - asked.get(user_id, 0) > 6:
                    # Once, not retried: the status below says whether it took.
                    await owner.http.post("/api/sync/runs", headers=headers)
                    asked[user_id] = time.monotonic()
                answer = await owner.http.get("/api/sync/status", headers=headers)
            except httpx.TransportError:
                continue
            if answer.status_code == 401:
                await owner.refresh()
                continue
            status = answer.json() if answer.status_code == 200 else {}
            last = status.get("last_success_at")
            if (
                status.get("state") == "idle"
                and last
                and aware(datetime.fromisoformat(last.replace("Z", "+00:00"))) >= since
            ):
                del waiting[user_id]
        if waiting:
            await asyncio.sleep(2)
    return list(waiting)


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(
    duration: float,
    owners: int,
    load: Load,
    schedule: FaultSchedule,
    checks: list[Check],
    letters: list[DeadLetter],
    notes: list[str],
) -> str:
    lines = []
    rate = load.requests / duration if duration else 0
    lines.append("| what | figure |")
    lines.append("|---|---|")
    lines.append(
        f"| load held | {owners} owners for {duration:.0f} s: {load.requests} requests "
        f"({rate:.1f}/s), {dict(sorted(load.statuses.items()))}, "
        f"p50 {percentile(load.latencies, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(load.latencies, 0.95) * 1000:.0f} ms |"
    )
    lines.append(f"| server errors (500) | {len(load.server_errors)} |")
    gave_up = sum(load.gave_up.values())
    lines.append(f"| requests given up (no answer in 60 s) | {gave_up} {dict(load.gave_up)} |")
    refused = sum(load.connection_errors.values())
    lines.append(
        f"| connection errors met and retried | {refused} {dict(load.connection_errors)} |"
    )
    injected = schedule.injected()
    lines.append(
        f"| faults injected | {sum(injected.values())}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(injected.items()))
        + f"; failed actions {len(schedule.failed())} |"
    )
    listed = "; ".join(str(letter) for letter in letters[:20])
    more = f"; and {len(letters) - 20} more" if len(letters) > 20 else ""
    lines.append(
        f"| dead letters | {len(letters)}" + (f": {listed}{more}" if letters else "") + " |"
    )
    lines.append("")
    lines.append("| records checked | checked | lost | doubled |")
    lines.append("|---|---:|---:|---:|")
    for check in checks:
        lines.append(f"| {check.name} | {check.checked} | {check.lost} | {check.doubled} |")
    total = (
        sum(c.checked for c in checks),
        sum(c.lost for c in checks),
        sum(c.doubled for c in checks),
    )
    lines.append(f"| **all** | {total[0]} | {total[1]} | {total[2]} |")
    details = [note for check in checks for note in check.notes[:8]]
    details += [f"500: {e}" for e in load.server_errors[:10]]
    details += [f"fault {r.name}: {r.error}" for r in schedule.failed()]
    details += notes
    if details:
        lines.append("")
        lines.extend(f"- {d}" for d in details)
    return "\n".join(lines)


async def drill(args: argparse.Namespace) -> int:
    run_dir = args.run_dir
    phases = Phases()
    stack = await build_stack(run_dir)
    engine = create_async_engine(stack.db.server.url("", driver="mysql+asyncmy"), pool_size=2)
    owners: list[Owner] = []
    try:
        await start_stack(stack, phases)
        ses_reports_stop = asyncio.Event()
        ses_reports = asyncio.create_task(report_ses_deliveries(stack, ses_reports_stop))
        accepted, load = Accepted(), Load()
        owners = [
            Owner(n, stack.gateway, stack.running.provider, accepted, load)
            for n in range(args.owners)
        ]
        billing_due = date.today() + timedelta(days=1)
        log(f"signing in {len(owners)} owners")
        await asyncio.gather(*(o.sign_in() for o in owners))
        await asyncio.gather(
            *(o.connect_platform(stack.platform, stack.platform_proxy.address) for o in owners[::4])
        )
        schedule = drill_schedule(stack, args.duration, broker_restart=args.broker_restart)
        phases.end("sign-in")
        stop = asyncio.Event()
        started = time.monotonic()
        log(f"traffic and faults for {args.duration:.0f} s")
        traffic = [asyncio.create_task(owner_loop(o, stop, billing_due)) for o in owners]
        faults = asyncio.create_task(schedule.run())
        await asyncio.sleep(args.duration / 2)
        billing = asyncio.create_task(
            billing_run(stack, billing_due, time.monotonic() + args.duration / 2 + 120)
        )
        await asyncio.sleep(max(0.0, started + args.duration - time.monotonic()))
        stop.set()
        phases.end("traffic")
        log("traffic stops; waiting for answers in flight and the last faults to end")
        await asyncio.gather(*traffic, return_exceptions=True)
        phases.end("answers in flight")
        await faults
        phases.end("last faults")
        held = time.monotonic() - started
        notes = [await billing]
        phases.end("billing run")
        log("draining: the last syncs, outboxes, consumers, payments and emails")
        drain_start = datetime.now(UTC) - timedelta(seconds=1)
        unfinished = await final_syncs(owners, accepted, drain_start)
        if unfinished:
            notes.append(f"syncs that did not finish: {unfinished}")
        deadline = time.monotonic() + args.drain
        while True:
            left = await backlog(engine, stack.broker.bootstrap)
            if not any(left.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        notes.append(f"drained in {time.monotonic() - started - held:.0f} s")
        phases.end("drain")
        checks = await reconcile(engine, stack, accepted, left)
        letters = await dead_letters(stack.broker.bootstrap, dead_letter_topics())
        checks.append(dead_letter_check(letters))
        ses_reports_stop.set()
        await ses_reports
        phases.end("reconcile")
        notes.append(f"time: {phases}")
        table = report(held, len(owners), load, schedule, checks, letters, notes)
        print(table, flush=True)
        (run_dir / "report.md").write_text(table + "\n")
        failed = any(c.lost or c.doubled for c in checks) or load.server_errors
        return 1 if failed else 0
    finally:
        for owner in owners:
            await owner.close()
        await engine.dispose()
        log("stopping the suite")
        phases.end("until stopping")
        await stop_stack(stack)
        if not args.keep:
            shutil.rmtree(run_dir / "db", ignore_errors=True)
            shutil.rmtree(run_dir / "s3", ignore_errors=True)
        phases.end("stop")
        log(f"stopped; {phases}; all {sum(phases.took.values()):.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=float(os.environ.get("DURATION", 180)))
    parser.add_argument("--owners", type=int, default=int(os.environ.get("OWNERS", 0)) or None)
    parser.add_argument("--drain", type=float, default=120, help="seconds allowed to drain")
    parser.add_argument("--run-dir", default=str(ROOT / ".run" / "drill"))
    parser.add_argument("--keep", action="store_true", help="keep the database and S3 files")
    parser.add_argument(
        "--no-broker-restart",
        dest="broker_restart",
        action="store_false",
        help="leave the broker running (its restart loses records: docs/reliability.md)",
    )
    args = parser.parse_args()
    args.run_dir = Path(args.run_dir).resolve()
    if args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    args.run_dir.mkdir(parents=True)
    if args.owners is None:
        args.owners = 8 if args.duration <= 60 else 24
    sys.exit(asyncio.run(drill(args)))


if __name__ == "__main__":
    main()
