"""The load test (docs/benchmarks.md, "Load"): the whole suite on free ports, then locust's
owners (tests/load/locustfile.py) through the gateway for a bounded time, once as it is and
once with faults injected, and the figures: answers per status, p50/p95 per endpoint, 429s
and their Retry-After, and after each fault the time until the backlog drained.

    .venv/bin/python scripts/load.py [--users 200] [--duration 5m] [--faults off|on|both]
                                     [--write-docs] [--smoke] [--keep DIR]

Everything listens on loopback. The suite is `common.testing.suite` on throwaway schemas of
the local MariaDB, a dev broker of its own, S3 (moto) and the email providers' simulator,
with the billing platform's simulator beside it; the gateway keeps the production limits and
trusts 127.0.0.1 as a proxy, so each simulated owner's X-Forwarded-For address is a client
of its own.

With faults, the services reach MySQL (invoice, payment) and FakePay through fault proxies
(common.testing.fault_proxy) and a schedule (common.testing.faults) kills every API and
worker once and restarts it, slows and resets those links, and switches FakePay, the email
provider and the billing platform to failing and back, one fault at a time with room
between them. After each fault ends, the backlog (rows still in any outbox, records not yet
handled by a consumer group) is sampled every second until everything that was pending at
the fault's end has been published and consumed: that is the recovery time.

Exit status 1 on any 5xx, any 429 without Retry-After, any answer the scenario did not
expect, or (with --smoke) a request type that never ran.
"""

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from common.testing.bench import Table, machine, write_section
from common.testing.fault_proxy import FaultProxy
from common.testing.faults import (
    Fault,
    FaultRecord,
    FaultSchedule,
    billing_platform_outage,
    fakepay_outage,
    mail_provider_outage,
    proxy_latency,
    proxy_resets,
)
from common.testing.plugin import drop_database, stop_all
from common.testing.s3 import S3Server
from common.testing.servers import find_kafka, find_mysql
from common.testing.suite import PDF_BUCKET, SERVICES, Suite, migrated_schemas, run_suite
from simulators.billing_platform_testing import BillingPlatformServer
from simulators.mail_testing import MailProvidersServer

REPOSITORY = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPOSITORY / "tests" / "load" / "locustfile.py"
BENCHMARKS = REPOSITORY / "docs" / "benchmarks.md"
# Recipients the email providers' simulator bounces (docs/email.md); the scenario sends some
# of its emails to them.
BOUNCING = [f"bounce-{n}@example.com" for n in range(5)]
DRAIN_TIMEOUT = 300.0


def parse_duration(value: str) -> int:
    """`5m`, `90s`, `1h` or plain seconds."""
    found = re.fullmatch(r"(\d+)([smh]?)", value.strip())
    if not found:
        raise argparse.ArgumentTypeError("a duration like 30s, 5m or 1h")
    return int(found[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[found[2]]


# --- the backlog: outboxes and consumer lag ---------------------------------------------------


class BacklogProbe:
    """Reads every service's outbox and every consumer group's position on its topics."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.engines = {
            name: create_async_engine(url, pool_size=1, max_overflow=0)
            for name, url in suite.databases.items()
        }
        self.groups: dict[str, list[str]] = {}
        for service in SERVICES:
            consumers = importlib.import_module(f"{service.module}.consumers")
            self.groups[consumers.CONSUMER_GROUP] = list(consumers.TOPICS)
        self.consumers: dict[str, AIOKafkaConsumer] = {}
        # Several drains may be measured at once; a consumer's assignment is one at a time.
        self.kafka = asyncio.Lock()

    async def close(self) -> None:
        for engine in self.engines.values():
            await engine.dispose()
        for consumer in self.consumers.values():
            await consumer.stop()

    async def outbox_marks(self) -> dict[str, int]:
        """The newest outbox row id per schema (0 when empty)."""
        marks = {}
        for name, engine in self.engines.items():
            async with engine.connect() as connection:
                newest = await connection.scalar(text("SELECT MAX(id) FROM outbox_messages"))
            marks[name] = int(newest or 0)
        return marks

    async def outbox_left(self, marks: dict[str, int] | None = None) -> dict[str, int]:
        """Rows still in each outbox (only those up to `marks`, when given)."""
        left = {}
        for name, engine in self.engines.items():
            query = "SELECT COUNT(*) FROM outbox_messages"
            parameters: dict[str, Any] = {}
            if marks is not None:
                query += " WHERE id <= :mark"
                parameters["mark"] = marks[name]
            async with engine.connect() as connection:
                left[name] = int(await connection.scalar(text(query), parameters) or 0)
        return left

    async def _consumer(self, group: str) -> AIOKafkaConsumer:
        if group not in self.consumers:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.suite.kafka_bootstrap,
                group_id=group,
                enable_auto_commit=False,
                fetch_max_wait_ms=50,
            )
            await consumer.start()
            self.consumers[group] = consumer
        return self.consumers[group]

    async def drained_after(self, began: float, limit: float = DRAIN_TIMEOUT) -> float:
        """Seconds from `began` (a time.monotonic()) until what was pending then has left
        every outbox and every consumer group has handled the records published up to that
        point; NaN if not within `limit` seconds."""
        marks = await self.outbox_marks()
        while time.monotonic() - began < limit:
            if sum((await self.outbox_left(marks)).values()) == 0:
                break
            await asyncio.sleep(0.5)
        else:
            return math.nan
        # The outbox rows pending at `began` are published now: the groups must reach the
        # watermarks of this moment (which may hold a few later events too).
        async with self.kafka:
            targets = await self._watermarks()
        while time.monotonic() - began < limit:
            async with self.kafka:
                reached = await self._reached(targets)
            if reached:
                return time.monotonic() - began
            await asyncio.sleep(0.5)
        return math.nan

    async def _watermarks(self) -> dict[str, dict[TopicPartition, int]]:
        targets: dict[str, dict[TopicPartition, int]] = {}
        for group, topics in self.groups.items():
            consumer = await self._consumer(group)
            await consumer.topics()
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(consumer.partitions_for_topic(topic) or [])
            ]
            consumer.assign(partitions)
            for partition in partitions:
                consumer.seek(partition, (await consumer.committed(partition)) or 0)
            await consumer.getmany(timeout_ms=200, max_records=1)
            targets[group] = {p: consumer.highwater(p) or 0 for p in partitions}
        return targets

    async def _reached(self, targets: dict[str, dict[TopicPartition, int]]) -> bool:
        for group, marks in targets.items():
            consumer = await self._consumer(group)
            for partition, mark in marks.items():
                if ((await consumer.committed(partition)) or 0) < mark:
                    return False
        return True


# --- the suite --------------------------------------------------------------------------------


@dataclass
class Proxies:
    """The links a fault run breaks: each service's MySQL and the payment service's FakePay."""

    mysql: dict[str, FaultProxy] = field(default_factory=dict)
    fakepay: FaultProxy | None = None

    async def stop(self) -> None:
        for proxy in [*self.mysql.values(), *([self.fakepay] if self.fakepay else [])]:
            await proxy.stop()


def through(url: str, proxy: FaultProxy) -> str:
    """The URL with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    address = proxy.address
    return urlunsplit(
        parts._replace(netloc=f"{netloc[0]}@{address}" if len(netloc) == 2 else address)
    )


@contextlib.asynccontextmanager
async def started_suite(
    logs: Path, replicas: int, faulty: bool
) -> AsyncIterator[tuple[Suite, Proxies, BillingPlatformServer]]:
    """The suite on throwaway schemas, its own broker, S3 and simulators; with fault proxies
    on the invoice and payment services' MySQL and on FakePay when `faulty`."""
    stack: list[Any] = []
    server = await asyncio.to_thread(find_mysql, stack)
    databases: dict[str, str] = {}
    proxies = Proxies()
    try:
        databases = await asyncio.to_thread(migrated_schemas, server, "load")
        kafka = await asyncio.to_thread(find_kafka, stack)
        with contextlib.ExitStack() as servers:
            storage = servers.enter_context(S3Server())
            storage.client().create_bucket(Bucket=PDF_BUCKET)
            # Generous start-up times: the machine these run on is often busy.
            mail = MailProvidersServer().start(timeout=300)
            servers.callback(mail.stop)
            platform = BillingPlatformServer().start(timeout=300)
            servers.callback(platform.stop)
            async with httpx.AsyncClient(base_url=mail.url, timeout=30) as control:
                for spec in bounces():
                    (await control.post("/_control/faults", json=spec)).raise_for_status()
            overrides: dict[str, dict[str, str]] = {}
            if faulty:
                for name in ("invoice", "payment"):
                    target = urlsplit(databases[name])
                    proxy = FaultProxy(target.hostname or "", target.port or 3306)
                    proxy.name = f"{name}-mysql"
                    proxies.mysql[name] = await proxy.start()
                    variable = f"{name.upper()}_DATABASE_URL"
                    overrides[name] = {variable: through(databases[name], proxy)}
                # FakePay's port is chosen inside run_suite: the proxy listens now and is
                # pointed at FakePay once the suite has started it (the target is read per
                # connection, and nothing pays before the suite is up).
                proxies.fakepay = await FaultProxy("127.0.0.1", 9, name="fakepay").start()
                overrides["payment"] = {
                    **overrides["payment"],
                    "PAYMENT_FAKEPAY_URL": f"http://{proxies.fakepay.address}/fakepay",
                }
            running = run_suite(
                databases=databases,
                kafka_bootstrap=kafka,
                storage=storage,
                mail=mail,
                logs=logs,
                replicas=replicas,
                gateway={
                    # Production's budgets per address: each simulated owner is an address.
                    "pay_rate": "5r/s",
                    "pay_burst": 10,
                    "user_rate": "20r/s",
                    "user_burst": 40,
                    "trusted_proxies": ("127.0.0.1",),
                },
                environment=lambda name: overrides.get(name.split("-", 1)[0], {}),
            )
            suite = await asyncio.to_thread(running.__enter__)
            try:
                if proxies.fakepay is not None:
                    proxies.fakepay.target = ("127.0.0.1", urlsplit(suite.fakepay).port or 0)
                yield suite, proxies, platform
            finally:
                await asyncio.to_thread(running.__exit__, None, None, None)
                await proxies.stop()
    finally:
        for url in databases.values():
            await drop_database(server, url.rsplit("/", 1)[1])
        await asyncio.to_thread(stop_all, stack)


def bounces() -> list[dict[str, str]]:
    """The email provider's standing faults: these recipients bounce."""
    return [{"provider": "sendgrid", "mode": "bounce", "recipient": a} for a in BOUNCING]


# --- the fault schedule -----------------------------------------------------------------------


def process_fault(suite: Suite, service: str, at: float, down: float) -> Fault:
    """kill -9 of a service's API and worker (the first replica's), started again after
    `down` seconds; with more replicas the others carry on meanwhile."""
    assert suite.processes is not None
    processes = suite.processes
    names = [f"{service}-api", f"{service}-worker"]

    async def begin() -> None:
        for name in names:
            await asyncio.to_thread(processes.kill, name)

    async def end() -> None:
        for name in names:
            await asyncio.to_thread(processes.restart, name)

    return Fault(f"kill -9 {service}-api and {service}-worker", "process", at, down, begin, end)


def fault_schedule(
    suite: Suite, proxies: Proxies, platform: BillingPlatformServer, duration: float
) -> list[Fault]:
    """One fault at a time, evenly spread over the run, each short, so that the time to drain
    after each can be told apart."""
    assert proxies.fakepay is not None
    makers = [
        *(lambda at, s=service.name: process_fault(suite, s, at, down=2) for service in SERVICES),
        lambda at: proxy_latency(proxies.mysql["invoice"], at, 8, ms=200, jitter_ms=100),
        lambda at: proxy_resets(proxies.mysql["payment"], at, 6, rate=0.3),
        lambda at: proxy_resets(proxies.fakepay, at, 6, rate=0.3),
        lambda at: fakepay_outage(suite.fakepay, at, 8, mode="error"),
        lambda at: fakepay_outage(suite.fakepay, at, 8, mode="slow", delay=3),
        lambda at: mail_provider_outage(suite.mail.url, "sendgrid", at, 8, keep=bounces()),
        lambda at: billing_platform_outage(platform.base_url, at, 8, mode="error"),
    ]
    gap = duration / (len(makers) + 1)
    return [make(gap * (n + 1)) for n, make in enumerate(makers)]


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Recovery:
    fault: str
    ended_at: float
    seconds: float


@dataclass
class Outcome:
    label: str
    users: int
    duration: int
    # The locustfile's report (tests/load/locustfile.py, _write_report).
    report: dict[str, Any]
    load_before: float
    load_after: float
    billing_run: str
    drain_after_run: float
    faults: list[FaultRecord] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)

    @property
    def endpoints(self) -> dict[str, dict[str, Any]]:
        return dict(self.report.get("endpoints", {}))

    def count(self, predicate: Any) -> int:
        return sum(
            n
            for endpoint in self.endpoints.values()
            for s, n in endpoint["statuses"].items()
            if predicate(int(s))
        )

    @property
    def server_errors(self) -> int:
        """Answers 5xx, or none at all (a connection refused or reset: status 0)."""
        return self.count(lambda s: s >= 500 or s == 0)

    @property
    def unexpected(self) -> int:
        return int(self.report.get("total", {}).get("failures", 0))


async def billing_run(suite: Suite) -> str:
    """The monthly billing run, by hand (python -m payment.cli billing-run) while the owners
    work: with an every-minute schedule, so that today's run charges what is due today."""
    assert suite.processes is not None
    env = {
        **suite.processes.children["payment-worker"].env,
        "PAYMENT_BILLING_SCHEDULE": "* * * * *",
    }
    command = [sys.executable, "-m", "payment.cli", "billing-run"]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
    return f"exit {process.returncode}: " + " / ".join(lines[-6:])


async def run_load(
    label: str, users: int, duration: int, replicas: int, faulty: bool, work: Path
) -> Outcome:
    logs = work / f"{label}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    async with started_suite(logs, replicas, faulty) as (suite, proxies, platform):
        probe = BacklogProbe(suite)
        report = work / f"{label}-report.json"
        env = {
            **os.environ,
            "LOAD_PROVIDER": suite.provider,
            "LOAD_BILLING_PLATFORM": platform.base_url,
            "LOAD_BOUNCING": ",".join(BOUNCING),
            "LOAD_REPORT": str(report),
        }
        command = [
            sys.executable,
            *("-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"),
            *("--users", str(users), "--spawn-rate", str(max(1, users // 20))),
            *("--run-time", f"{duration}s", "--stop-timeout", "30"),
            *("--host", suite.gateway, "--loglevel", "WARNING"),
        ]
        load_before = os.getloadavg()[0]
        print(f"[{label}] {users} users for {duration}s through {suite.gateway}", flush=True)
        locust = await asyncio.create_subprocess_exec(*command, env=env)
        started = time.monotonic()
        recoveries: list[Recovery] = []
        drains: list[asyncio.Task[None]] = []

        def measured(fault: Fault) -> Fault:
            """The fault, with the time to drain measured from the moment its end is done."""
            original = fault.end

            async def end() -> None:
                await original()
                ended = time.monotonic()

                async def drain() -> None:
                    seconds = await probe.drained_after(ended)
                    recoveries.append(Recovery(fault.name, ended - started, seconds))

                drains.append(asyncio.create_task(drain()))

            fault.end = end
            return fault

        schedule = None
        if faulty:
            faults = fault_schedule(suite, proxies, platform, duration)
            schedule = FaultSchedule([measured(f) for f in faults])
        await asyncio.sleep(0)
        scheduled = asyncio.create_task(schedule.run()) if schedule else None
        await asyncio.sleep(duration / 2)
        billing = await billing_run(suite)
        print(f"[{label}] billing run: {billing}", flush=True)
        await locust.wait()
        if scheduled is not None:
            await scheduled
        for task in drains:
            await task
        load_after = os.getloadavg()[0]
        drain_after_run = await probe.drained_after(time.monotonic())
        await probe.close()
    return Outcome(
        label=label,
        users=users,
        duration=duration,
        report=read_report(report),
        load_before=load_before,
        load_after=load_after,
        billing_run=billing,
        drain_after_run=drain_after_run,
        faults=schedule.records if schedule else [],
        recoveries=sorted(recoveries, key=lambda r: r.ended_at),
    )


# --- the report -------------------------------------------------------------------------------


def read_report(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return report


def endpoint_table(outcome: Outcome, baseline: Outcome | None = None) -> Table:
    """Per endpoint; with a baseline (the run without faults), each p95 as a ratio of its."""
    headers = ["endpoint", "requests", "p50 ms", "p95 ms", "2xx/3xx", "4xx", "429", "5xx"]
    table = Table(headers + (["p95 / steady p95"] if baseline else []))
    before = baseline.endpoints if baseline else {}

    def ratio(name: str, p95: float) -> list[float]:
        if baseline is None:
            return []
        if name == "all":
            steady = float(baseline.report.get("total", {}).get("p95", math.nan))
        else:
            steady = float(before.get(name, {}).get("p95", math.nan))
        return [p95 / steady if steady else math.nan]

    for name, endpoint in sorted(outcome.endpoints.items(), key=lambda e: -e[1]["requests"]):
        counts = {int(s): n for s, n in endpoint["statuses"].items()}
        table.add(
            f"{endpoint['method']} {name}",
            endpoint["requests"],
            float(endpoint["p50"]),
            float(endpoint["p95"]),
            sum(n for s, n in counts.items() if 200 <= s < 400),
            sum(n for s, n in counts.items() if 400 <= s < 500 and s != 429),
            counts.get(429, 0),
            sum(n for s, n in counts.items() if s >= 500 or s == 0),
            *ratio(name, float(endpoint["p95"])),
        )
    total = outcome.report.get("total", {})
    table.add(
        "all",
        int(total.get("requests", 0)),
        float(total.get("p50", math.nan)),
        float(total.get("p95", math.nan)),
        outcome.count(lambda s: 200 <= s < 400),
        outcome.count(lambda s: 400 <= s < 500 and s != 429),
        outcome.count(lambda s: s == 429),
        outcome.server_errors,
        *ratio("all", float(total.get("p95", math.nan))),
    )
    return table


def recovery_table(outcome: Outcome) -> Table:
    table = Table(["fault", "ended at s", "backlog drained after s"])
    for recovery in outcome.recoveries:
        table.add(recovery.fault, recovery.ended_at, recovery.seconds)
    return table


def summary(outcome: Outcome) -> str:
    total = int(outcome.report.get("total", {}).get("requests", 0))
    too_many = outcome.count(lambda s: s == 429)
    missing = sum(outcome.report.get("missing_retry_after", {}).values())
    lines = [
        f"{outcome.users} users for {outcome.duration} s: {total:,} requests "
        f"({total / outcome.duration:.1f}/s), {outcome.server_errors} answered 5xx (or not "
        f"at all), {outcome.unexpected} unexpected answers, {too_many} answered 429 "
        f"({too_many - missing} with Retry-After).",
        f"Load average {outcome.load_before:.1f} before, {outcome.load_after:.1f} after.",
        f"Billing run: {outcome.billing_run}",
        f"Backlog drained {outcome.drain_after_run:.1f} s after the owners stopped.",
    ]
    if outcome.faults:
        failed = [r for r in outcome.faults if r.error]
        lines.append(f"Faults injected: {len(outcome.faults)}, {len(failed)} failed to apply.")
    for error in outcome.report.get("errors", [])[:20]:
        lines.append(f"  unexpected x{error['count']}: {error['name']}: {error['error'][:160]}")
    return "\n".join(lines)


def problems(outcome: Outcome, smoke: bool, faulty: bool) -> list[str]:
    """What fails the run. Without faults: any 5xx. With faults, a 503 with Retry-After (a
    dependency down, said properly) is the answer the API documents; any other 5xx, a 429 or
    503 without Retry-After, a fault that did not apply or a backlog that did not drain is not."""
    found = []
    if faulty:
        other = outcome.count(lambda s: (s >= 500 and s != 503) or s == 0)
        if other:
            found.append(f"{other} answers were 5xx other than 503, or none")
        found += [f"fault failed: {r.name}: {r.error}" for r in outcome.faults if r.error]
        found += [f"not drained: {r.fault}" for r in outcome.recoveries if math.isnan(r.seconds)]
    elif outcome.server_errors:
        found.append(f"{outcome.server_errors} answers were 5xx or none")
    if outcome.report.get("missing_retry_after"):
        found.append(f"429/503 without Retry-After: {outcome.report['missing_retry_after']}")
    if outcome.unexpected:
        found.append(f"{outcome.unexpected} unexpected answers (see above)")
    if math.isnan(outcome.drain_after_run):
        found.append("the backlog did not drain after the run")
    if smoke:
        ran = {name for name, e in outcome.endpoints.items() if e["requests"]}
        missing = [name for name in outcome.report.get("operations", []) if name not in ran]
        if missing:
            found.append(f"never ran: {missing}")
    return found


def section(outcome: Outcome, baseline: Outcome | None) -> str:
    parts = [summary(outcome), endpoint_table(outcome, baseline).markdown()]
    if outcome.recoveries:
        parts.append(recovery_table(outcome).markdown())
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--duration", type=parse_duration, default=300)
    parser.add_argument("--faults", choices=("off", "on", "both"), default="both")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="also require every request type")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument(
        "--keep", type=Path, help="keep every process's log and the reports in this folder"
    )
    arguments = parser.parse_args()
    # SIGTERM stops a run as Ctrl-C does: the suite is stopped and its schemas dropped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(machine(), flush=True)
    runs = {"off": [False], "on": [True], "both": [False, True]}[arguments.faults]
    failures = []
    steady: Outcome | None = None
    # As the docs show it: without where this machine kept its logs.
    shown = [a for a in sys.argv[1:] if not a.startswith("--keep")]
    if arguments.keep and str(arguments.keep) in shown:
        shown.remove(str(arguments.keep))
    command = " ".join(["scripts/load.py", *shown])
    with contextlib.ExitStack() as cleanup:
        if arguments.keep:
            arguments.keep.mkdir(parents=True, exist_ok=True)
            folder = str(arguments.keep)
        else:
            folder = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ledgerline-load-"))
        for faulty in runs:
            label = "faults" if faulty else "steady"
            outcome = asyncio.run(
                run_load(
                    label,
                    arguments.users,
                    arguments.duration,
                    arguments.replicas,
                    faulty,
                    Path(folder),
                )
            )
            baseline = steady if faulty else None
            print(f"\n== {label} ==\n{summary(outcome)}\n", flush=True)
            print(endpoint_table(outcome, baseline).text(), flush=True)
            if outcome.recoveries:
                print("\n" + recovery_table(outcome).text(), flush=True)
            if arguments.write_docs:
                when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
                heading = f"`{command}`, the {label} run, {when} UTC, {os.cpu_count()} cores:"
                body = heading + "\n\n" + section(outcome, baseline)
                write_section(BENCHMARKS, f"load-{label}", body)
            failures += [f"{label}: {p}" for p in problems(outcome, arguments.smoke, faulty)]
            if not faulty:
                steady = outcome
    if failures:
        print("\n".join(["", "FAILED:", *failures]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
