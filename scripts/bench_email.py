"""The email benchmark: invoice emails per second, each with its PDF, through failover.

The email service's dispatcher (the worker's sending loop) sends messages queued in a schema
of its own to the providers' simulator (a process speaking SendGrid's, Mailgun's and
SparkPost's HTTP APIs), each message's PDF fetched from moto's S3 server. Four figures, each
round measuring all of them in turn, medians over rounds:

- floor: the same requests (same body, same PDF) posted straight to the simulator with
  httpx at the same concurrency: no database, no S3, no bookkeeping;
- healthy: the first provider (SendGrid) takes everything;
- Mailgun alone: Mailgun first and healthy, the path failover ends on, without a failure;
- failover: the first provider answers 500 to everything; its circuit breaker opens after
  `breaker_threshold` failures, and the second (Mailgun) carries the rest;
- failover without a breaker: the same, each message paying its failed call first.

Ratios are against `healthy`, measured in the same run; failover's own cost is its ratio to
`Mailgun alone`. Run with the project's virtual
environment: `make bench` (after the others) or
`.venv/bin/python scripts/bench_email.py [--messages N] [--rounds R] [--output FILE]`. It needs
the local MariaDB as root without a password; it creates and drops a schema `email_bench_*`.
"""

import argparse
import asyncio
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import delete

ROOT = Path(__file__).resolve().parent.parent

from common.db import create_engine, create_sessionmaker  # noqa: E402
from common.testing.plugin import migrate_schema, temporary_database  # noqa: E402
from common.testing.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server  # noqa: E402
from common.testing.servers import find_mysql  # noqa: E402
from mailer import compose, service  # noqa: E402
from mailer.config import EmailSettings  # noqa: E402
from mailer.dispatcher import AttachmentStore, Dispatcher  # noqa: E402
from mailer.models import Attempt, Message, OutboxMessage, StatusChange  # noqa: E402
from mailer.providers import Attachment, MailgunProvider, OutgoingMail, create_providers  # noqa: E402
from simulators.mail_testing import MailProvidersServer  # noqa: E402

BUCKET = "bench-pdfs"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 160 + b"\n%%EOF\n"  # ~40 KB, like a one-page invoice
CONCURRENCY = 16


@dataclass
class Round:
    floor: float
    healthy: float
    mailgun: float
    failover: float
    no_breaker: float


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def queue_messages(sessionmaker: Callable[[], object], count: int, etag: str) -> None:
    """Queue `count` invoice emails, as the consumer does for invoice.send_requested."""
    body = compose.invoice_body(
        client_name="Client",
        sender_name="Owner Ltd",
        number="INV-1",
        description="Design work",
        amount="99.99",
        currency="USD",
        due_date="2026-12-31",
        message=None,
    )
    owner = uuid.uuid4()
    async with sessionmaker() as session, session.begin():  # type: ignore[attr-defined]
        for _ in range(count):
            send_id = uuid.uuid4()
            await service.queue_invoice_email(
                session,
                service.InvoiceEmail(
                    send_id=send_id,
                    owner_id=owner,
                    invoice_id=uuid.uuid4(),
                    recipient_email="client@example.com",
                    recipient_name="Client",
                    reply_to=None,
                    sender_name="Owner Ltd",
                    subject="Invoice INV-1",
                    body=body,
                    pdf_bucket=BUCKET,
                    pdf_key="invoice.pdf",
                    pdf_etag=etag,
                    pdf_filename="INV-1.pdf",
                    pdf_size=len(PDF),
                    fee_reference=f"email-send:{send_id}",
                    fee_amount=Decimal("0.50"),
                    fee_currency="USD",
                    requested_at=datetime.now(UTC),
                ),
            )


async def drain(dispatcher: Dispatcher, count: int, simulators: MailProvidersServer) -> float:
    """Run the dispatcher's own loop until `count` messages are carried; seconds taken."""
    before = await asyncio.to_thread(total_carried, simulators)
    stop = asyncio.Event()
    started = time.perf_counter()
    loop = asyncio.create_task(dispatcher.run(stop))
    while True:
        if await asyncio.to_thread(total_carried, simulators) >= before + count:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    stop.set()
    await loop
    return elapsed


def total_carried(simulators: MailProvidersServer) -> int:
    return sum(sum(counts.values()) for counts in simulators.counts().values())


async def floor_round(settings: EmailSettings, count: int) -> float:
    """The same Mailgun requests straight from httpx, CONCURRENCY at a time."""
    async with httpx.AsyncClient() as http:
        provider = MailgunProvider(settings, http)
        mails = [
            OutgoingMail(
                message_id=uuid.uuid4(),
                from_email=settings.from_email,
                from_name="Owner Ltd",
                to_email="client@example.com",
                to_name="Client",
                reply_to=None,
                subject="Invoice INV-1",
                text="text",
                html="<p>html</p>",
                attachments=(Attachment("INV-1.pdf", PDF),),
            )
            for _ in range(count)
        ]
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(mail: OutgoingMail) -> None:
            async with gate:
                await provider.send(mail)

        started = time.perf_counter()
        await asyncio.gather(*(one(mail) for mail in mails))
        return time.perf_counter() - started


async def run(args: argparse.Namespace) -> str:
    stack: list[object] = []
    mysql = find_mysql(stack)  # type: ignore[arg-type]
    rounds: list[Round] = []
    started = time.perf_counter()
    with MailProvidersServer() as simulators, S3Server() as aws:
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        etag = s3.put_object(Bucket=BUCKET, Key="invoice.pdf", Body=PDF)["ETag"]
        async with temporary_database(mysql, "email_bench") as url:
            migrate_schema(ROOT / "services" / "email" / "alembic.ini", "EMAIL", url)
            base = EmailSettings(
                environment="test",
                database_url=SecretStr(url),
                providers="sendgrid,mailgun",
                sendgrid_url=simulators.url,
                sendgrid_api_key=SecretStr("SG.bench"),
                mailgun_url=simulators.url,
                mailgun_api_key=SecretStr("key-bench"),
                s3_endpoint_url=aws.endpoint_url,
                aws_access_key_id=SecretStr(ACCESS_KEY_ID),
                aws_secret_access_key=SecretStr(SECRET_ACCESS_KEY),
                provider_timeout_seconds=5,
                send_concurrency=CONCURRENCY,
                dispatch_idle_seconds=0.02,
                breaker_threshold=5,
                breaker_ttl_seconds=60,
                log_level="WARNING",
            )
            engine = create_engine(url, pool_size=CONCURRENCY)
            sessionmaker = create_sessionmaker(engine)
            store = AttachmentStore(base)
            async with httpx.AsyncClient() as http:

                async def measured(settings: EmailSettings, fail_first: bool) -> float:
                    simulators.clear_faults()
                    if fail_first:
                        simulators.fault("sendgrid", "error")
                    await queue_messages(sessionmaker, args.messages, etag)
                    dispatcher = Dispatcher(
                        sessionmaker, create_providers(settings, http), settings, store
                    )
                    elapsed = await drain(dispatcher, args.messages, simulators)
                    simulators.clear_faults()
                    async with sessionmaker() as session, session.begin():
                        for table in (Attempt, StatusChange, OutboxMessage, Message):
                            await session.execute(delete(table))
                    return args.messages / elapsed

                say("warming up")
                await measured(base, fail_first=False)
                for number in range(args.rounds):
                    say(f"round {number + 1} of {args.rounds}")
                    floor = args.messages / await floor_round(base, args.messages)
                    healthy = await measured(base, fail_first=False)
                    mailgun = await measured(
                        base.model_copy(update={"providers": "mailgun"}), fail_first=False
                    )
                    failover = await measured(base, fail_first=True)
                    no_breaker = await measured(
                        base.model_copy(update={"breaker_threshold": 10**9}), fail_first=True
                    )
                    rounds.append(Round(floor, healthy, mailgun, failover, no_breaker))
            await engine.dispose()
    return render(args, rounds, time.perf_counter() - started)


def render(args: argparse.Namespace, rounds: list[Round], elapsed: float) -> str:
    def med(pick: Callable[[Round], float]) -> float:
        return statistics.median(pick(r) for r in rounds)

    healthy = med(lambda r: r.healthy)
    rows = [
        ("floor: the same Mailgun posts from httpx alone", med(lambda r: r.floor)),
        ("healthy: SendGrid takes all", healthy),
        ("Mailgun alone, healthy", med(lambda r: r.mailgun)),
        ("failover: SendGrid 500s, breaker on, Mailgun carries", med(lambda r: r.failover)),
        ("failover without a breaker", med(lambda r: r.no_breaker)),
    ]
    lines = [
        f"# Email benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"{args.messages} invoice emails per run, each with a {len(PDF) // 1024} KB PDF fetched "
        f"from S3 (moto), {CONCURRENCY} in flight, {args.rounds} rounds (medians); "
        f"{platform.machine()}, Python {platform.python_version()}, {elapsed:.0f} s in all.",
        "",
        "| run | emails/s | vs healthy |",
        "|---|---:|---:|",
        *(f"| {name} | {value:.1f} | {value / healthy:.2f} |" for name, value in rows),
        "",
        "Per round (emails/s): "
        + "; ".join(
            f"floor {r.floor:.0f}, healthy {r.healthy:.0f}, Mailgun {r.mailgun:.0f}, "
            f"failover {r.failover:.0f}, no breaker {r.no_breaker:.0f}"
            for r in rounds
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
