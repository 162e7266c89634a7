"""The fault run: 1,000 invoice emails while the first provider fails, then the second times
out (it takes the message and never answers), then both recover; the worker is SIGKILLed
once in the middle. Every message is carried exactly once (counted at the simulator), ends
`delivered` through the webhooks, and only the sends that had to fail give their fee back.

Real processes throughout: the email worker and API, the providers' simulator, moto's S3,
MariaDB and the dev broker.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.events import CLOUDEVENTS_CONTENT_TYPE, CloudEvent
from common.kafka import create_producer, ensure_topics
from common.testing.identity import TestIssuer
from common.testing.plugin import temporary_database
from common.testing.s3 import S3Server
from common.testing.servers import MysqlServer, free_port, wait_for_port
from mailer.models import Attempt, Message, StatusChange
from simulators.mail_testing import MailProvidersServer, SmtpSinkServer

from .conftest import environment_of, make_settings, migrate
from .factories import put_pdf, send_requested

MESSAGES = 1000
DOOMED = 10  # their PDF is gone: they fail for good, and their fee must come back
PDFS = 25  # the messages share a few PDFs (each is fetched for every message)


@pytest.fixture(scope="module")
async def fault_database(mysql_server: MysqlServer) -> AsyncIterator[str]:
    async with temporary_database(mysql_server, "email_fault") as url:
        migrate(url)
        yield url


@pytest.fixture(scope="module")
def fault_providers() -> Iterator[MailProvidersServer]:
    """A simulator of this run's own, so its counts are this run's only."""
    with MailProvidersServer() as server:
        yield server


class Worker:
    """`python -m mailer.worker` that can be killed and started again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mailer.worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [
                sys.executable,
                *("-m", "uvicorn", "--factory", "mailer.main:create_app"),
                *("--host", "127.0.0.1", "--port", str(port), "--no-access-log"),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def wait_until(predicate: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_thousand_sends_through_failures_and_a_killed_worker(
    fault_database: str,
    fault_providers: MailProvidersServer,
    smtp_sink: SmtpSinkServer,
    aws: S3Server,
    kafka_bootstrap: str,
    test_issuer: TestIssuer,
    tmp_path: Path,
) -> None:
    api_port = free_port()
    topic_suffix = uuid.uuid4().hex[:8]
    settings = make_settings(
        fault_database,
        kafka_bootstrap,
        test_issuer,
        fault_providers,
        smtp_sink,
        aws,
        providers="sendgrid,mailgun",
        send_concurrency=24,
        provider_timeout_seconds=1.0,
        in_doubt_grace_seconds=2,
        breaker_threshold=5,
        breaker_ttl_seconds=1,
        retry_base_seconds=0.3,
        retry_max_seconds=1,
        dispatch_idle_seconds=0.05,
        log_level="WARNING",
    )
    env = {**os.environ, **environment_of(settings)}
    owner = uuid.uuid4()

    # The claims: a few PDFs in S3, and the doomed messages' PDFs removed again.
    claims = [put_pdf(aws, f"fault-{topic_suffix}/{n}.pdf") for n in range(PDFS)]
    doomed_claim = put_pdf(aws, f"fault-{topic_suffix}/doomed.pdf")
    aws.client("s3").delete_object(Bucket=doomed_claim["bucket"], Key=doomed_claim["key"])
    events = [
        send_requested(owner, claims[n % PDFS], recipient=f"client{n}@example.com")
        for n in range(MESSAGES)
    ]
    doomed = [send_requested(owner, doomed_claim) for _ in range(DOOMED)]
    wanted = {e.data["send_id"] for e in events}
    doomed_ids = {e.data["send_id"] for e in doomed}

    engine = create_engine(fault_database, pool_size=2)
    sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)

    async def by_status() -> Counter[str]:
        async with sessionmaker() as session:
            rows = await session.execute(
                select(Message.status, func.count())
                .where(Message.owner_id == owner)
                .group_by(Message.status)
            )
            return Counter({str(status): int(count) for status, count in rows.all()})

    def carried() -> int:
        return sum(
            count
            for counts in fault_providers.counts().values()
            for send_id, count in counts.items()
            if send_id in wanted
        )

    api = start_api(env, api_port, tmp_path / "api.log")
    worker = Worker(env, tmp_path / "worker.log")
    started = time.monotonic()
    try:
        wait_for_port("127.0.0.1", api_port, timeout=60)
        fault_providers.report_to(f"http://127.0.0.1:{api_port}/webhooks")
        # Phase 1: the first provider fails (500) from the start.
        fault_providers.fault("sendgrid", "error")
        worker.start()

        await ensure_topics(kafka_bootstrap, ["invoice.events", "email.events"])
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        try:
            for event in [*events, *doomed]:
                await producer.send(
                    "invoice.events",
                    event.model_dump_json().encode(),
                    key=event.subject.encode(),
                    headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())],
                )
            await producer.flush()
        finally:
            await producer.stop()

        # The worker is killed once, in the middle of sending.
        await wait_until(lambda: asyncio.to_thread(lambda: carried() >= 300), 90, "300 sent")
        phases = {"300 carried": time.monotonic() - started}
        worker.kill()
        worker.start()

        # Phase 2: the second provider takes messages and never answers, the first still
        # fails: every call is in doubt, settled later by asking the provider.
        await wait_until(lambda: asyncio.to_thread(lambda: carried() >= 500), 90, "500 sent")
        phases["500 carried"] = time.monotonic() - started
        fault_providers.fault("mailgun", "timeout", delay=3)
        await asyncio.sleep(4)

        # Phase 3: both recover.
        fault_providers.clear_faults()

        async def all_settled() -> bool:
            counts = await by_status()
            return counts["delivered"] >= MESSAGES and counts["failed"] >= DOOMED

        phases["recovered"] = time.monotonic() - started

        async def all_carried() -> bool:
            return await asyncio.to_thread(lambda: carried() >= MESSAGES)

        await wait_until(all_carried, 120, "every message carried")
        phases["all carried"] = time.monotonic() - started
        await wait_until(all_settled, 120, "every message delivered or failed")
        elapsed = time.monotonic() - started

        # Exactly once, counted where it matters: at the providers.
        per_message: Counter[str] = Counter()
        by_provider: dict[str, str] = {}
        for provider, counts in fault_providers.counts().items():
            for send_id, count in counts.items():
                per_message[send_id] += count
                by_provider[send_id] = provider
        print("\nphases (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
        doubled = {s: per_message[s] for s in wanted if per_message[s] != 1}
        assert doubled == {}, await explain(sessionmaker, fault_providers, doubled)
        assert not doomed_ids & set(per_message)

        # Statuses: delivered by the provider that carried it, with the whole path behind.
        async with sessionmaker() as session:
            # This run's owner only: the worker may also have read other tests' requests.
            messages = (
                await session.scalars(select(Message).where(Message.owner_id == owner))
            ).all()
            changes = (await session.scalars(select(StatusChange).order_by(StatusChange.id))).all()
        path: dict[str, list[str]] = {}
        for change in changes:
            path.setdefault(str(change.message_id), []).append(change.status)
        for message in messages:
            key = str(message.id)
            if key in doomed_ids:
                assert message.status == "failed"
                continue
            assert message.status == "delivered", key
            assert message.provider == by_provider[key]
            steps = path[key]
            assert steps[0] == "queued"
            assert steps[-2:] == ["sent", "delivered"]
            assert steps.count("sent") == 1
        assert len(messages) == MESSAGES + DOOMED

        # Fees: a "failed" event with its fee for each doomed send, none for the others.
        failed_fees = await failed_events(kafka_bootstrap, owner)
        assert set(failed_fees) == doomed_ids
        assert all(ref == f"email-send:{send_id}" for send_id, ref in failed_fees.items())

        shares = Counter(by_provider[s] for s in wanted)
        print(f"fault run: {MESSAGES} delivered in {elapsed:.1f} s, carried by {dict(shares)}")
    finally:
        worker.stop()
        api.terminate()
        api.wait(15)
        fault_providers.clear()
        await engine.dispose()


async def explain(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    doubled: dict[str, int],
) -> str:
    """What happened to each message carried more than once: its attempts, its copies."""
    copies = [m for m in simulators.messages() if m["send_id"] in doubled]
    lines = []
    async with sessionmaker() as session:
        for send_id in list(doubled)[:10]:
            attempts = (
                await session.scalars(
                    select(Attempt)
                    .where(Attempt.message_id == uuid.UUID(send_id))
                    .order_by(Attempt.id)
                )
            ).all()
            lines.append(
                f"{send_id}: copies at "
                + ", ".join(c["provider"] for c in copies if c["send_id"] == send_id)
                + "; attempts "
                + "; ".join(
                    f"{a.provider} {a.outcome} {a.started_at:%H:%M:%S}-"
                    f"{a.finished_at and a.finished_at.strftime('%H:%M:%S')} {a.detail}"
                    for a in attempts
                )
            )
    return "\n".join(lines)


async def failed_events(kafka_bootstrap: str, owner: uuid.UUID) -> dict[str, str]:
    """send id -> fee reference of every email.status_changed "failed" of this owner."""
    consumer = AIOKafkaConsumer(
        "email.events",
        bootstrap_servers=kafka_bootstrap,
        group_id=f"fault-test-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    found: dict[str, str] = {}
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 3:
            batch = await consumer.getmany(timeout_ms=500)
            if any(batch.values()):
                quiet_since = time.monotonic()
            for records in batch.values():
                for record in records:
                    event = CloudEvent.model_validate_json(record.value)
                    data = event.data
                    if event.subject == str(owner) and data["status"] == "failed":
                        assert data["fee"] is not None
                        found[data["message_id"]] = data["fee"]["reference"]
    finally:
        await consumer.stop()
    return found
