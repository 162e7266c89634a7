"""One trace across services: a card payment from the request through `payment.succeeded`
to the invoice's update and the client's receipt email.

The invoice, payment and email apps, the payment and invoice relays, the three services'
consumer groups and the email service's dispatcher run in this process (the payment API on a
real port, so the invoice service calls it over HTTP as in production), on their own migrated
schemas, the test's Kafka broker, FakePay and the mail providers' simulator as processes;
every span goes to one in-memory exporter.
"""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from common.inbox import EventConsumer
from common.outbox import OutboxRelay
from common.runtime import Loop
from common.testing.identity import ISSUER, TestIssuer
from common.testing.plugin import broker_of_its_own, migrate_schema, temporary_database
from common.testing.servers import MysqlServer, free_port
from common.testing.tracing import parent_id, recorded_spans, trace_of
from invoice import consumers as invoice_consumers
from invoice.config import InvoiceSettings
from invoice.main import create_app as create_invoice_app
from invoice.models import InboxMessage as InvoiceInbox
from invoice.models import OutboxMessage as InvoiceOutbox
from mailer import consumers as email_consumers
from mailer.config import EmailSettings
from mailer.dispatcher import AttachmentStore, Dispatcher
from mailer.main import create_app as create_email_app
from mailer.models import InboxMessage as EmailInbox
from mailer.providers import create_providers
from payment import consumers as payment_consumers
from payment.config import PaymentSettings
from payment.main import create_app as create_payment_app
from payment.models import InboxMessage as PaymentInbox
from payment.models import OutboxMessage as PaymentOutbox
from simulators.mail_testing import MailProvidersServer
from simulators.testing import FakePayServer

SERVICES = Path(__file__).resolve().parent.parent / "services"
CARD = {"number": "1234567812345678", "name": "J Doe", "expiry": "01-2040"}


@pytest.fixture(scope="module")
async def databases(mysql_server: MysqlServer) -> AsyncIterator[tuple[str, str, str]]:
    async with (
        temporary_database(mysql_server, "invoice_trace") as invoice_url,
        temporary_database(mysql_server, "payment_trace") as payment_url,
        temporary_database(mysql_server, "email_trace") as email_url,
    ):
        migrate_schema(SERVICES / "invoice" / "alembic.ini", "INVOICE", invoice_url)
        migrate_schema(SERVICES / "payment" / "alembic.ini", "PAYMENT", payment_url)
        migrate_schema(SERVICES / "email" / "alembic.ini", "EMAIL", email_url)
        yield invoice_url, payment_url, email_url


@pytest.fixture(scope="module")
def kafka_bootstrap() -> Iterator[str]:
    """A broker of the test's own: its consumers read their topics from the start, and the
    events other tests left on the session's broker (made-up ones among them) would keep them
    busy past the wait for this flow's spans."""
    with broker_of_its_own() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="module")
def fakepay() -> Iterator[FakePayServer]:
    with FakePayServer() as server:
        yield server


@pytest.fixture(scope="module")
def mail_providers() -> Iterator[MailProvidersServer]:
    with MailProvidersServer() as server:
        yield server


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app behind uvicorn on a free port of this process, lifespan included."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


@contextlib.asynccontextmanager
async def running(loops: list[Loop]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop(stop)) for loop in loops]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def spans_until(
    exporter: InMemorySpanExporter, names: set[str], within_seconds: float = 60
) -> list[ReadableSpan]:
    """The finished spans, once every one of the names has ended."""
    for _ in range(int(within_seconds * 10)):
        spans = list(exporter.get_finished_spans())
        if names <= {span.name for span in spans}:
            return spans
        await asyncio.sleep(0.1)
    raise AssertionError(f"missing spans: {names - {span.name for span in spans}}")


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, f"{name}: {len(named)} in {sorted(span.name for span in spans)}"
    return named[0]


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [span for span in spans if parent_id(span) == span_id(parent)]


def handler_of(spans: list[ReadableSpan], event_type: str, group: str) -> ReadableSpan:
    """The one span of a consumer group's handler of an event type."""
    return one(
        [
            span
            for span in spans
            if span.attributes
            and str(span.attributes.get("messaging.consumer.group.name", "")).startswith(group)
        ],
        f"process {event_type}",
    )


def statements(spans: list[ReadableSpan], parent: ReadableSpan) -> list[str]:
    return [
        span.name
        for span in children(spans, parent)
        if span.kind == SpanKind.CLIENT and span.attributes and "db.system" in span.attributes
    ]


async def test_a_card_payment_is_one_trace_from_the_request_to_the_receipt_email(
    databases: tuple[str, str, str],
    fakepay: FakePayServer,
    mail_providers: MailProvidersServer,
    kafka_bootstrap: str,
    test_issuer: TestIssuer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    invoice_url, payment_url, email_url = databases
    shared = {
        "environment": "test",
        "kafka_bootstrap_servers": kafka_bootstrap,
        "auth_jwks_url": test_issuer.jwks_url,
        "auth_issuer": ISSUER,
        "cursor_secret": SecretStr("test-cursor-secret"),
    }
    payment_settings = PaymentSettings(
        database_url=SecretStr(payment_url), fakepay_url=fakepay.url, **shared
    )
    email_settings = EmailSettings(
        database_url=SecretStr(email_url),
        providers="mailgun",
        mailgun_url=mail_providers.url,
        mailgun_api_key=SecretStr("key-test"),
        dispatch_idle_seconds=0.05,
        **shared,
    )
    suffix = uuid.uuid4().hex[:6]
    headers = test_issuer.headers(uuid.uuid4())

    with recorded_spans() as exporter:
        payment_app = create_payment_app(payment_settings)
        async with served(payment_app) as payment_api:
            invoice_settings = InvoiceSettings(
                database_url=SecretStr(invoice_url),
                payment_api_url=payment_api,
                pdf_store="file:///nonexistent",  # no PDF is rendered here
                **shared,
            )
            invoice_app = create_invoice_app(invoice_settings)
            email_app = create_email_app(email_settings)
            async with (
                invoice_app.router.lifespan_context(invoice_app),
                email_app.router.lifespan_context(email_app),
                httpx.AsyncClient() as mail_http,
            ):
                dispatcher = Dispatcher(
                    email_app.state.sessionmaker,
                    create_providers(email_settings, mail_http),
                    email_settings,
                    AttachmentStore(email_settings),
                )
                loops: list[Loop] = [
                    OutboxRelay(payment_app.state.sessionmaker, PaymentOutbox, kafka_bootstrap).run,
                    OutboxRelay(invoice_app.state.sessionmaker, InvoiceOutbox, kafka_bootstrap).run,
                    EventConsumer(
                        name=f"invoice-trace-{suffix}",
                        topics=invoice_consumers.TOPICS,
                        handlers=invoice_consumers.HANDLERS,
                        sessionmaker=invoice_app.state.sessionmaker,
                        inbox_model=InvoiceInbox,
                        bootstrap_servers=kafka_bootstrap,
                    ).run,
                    EventConsumer(
                        name=f"payment-trace-{suffix}",
                        topics=payment_consumers.TOPICS,
                        handlers=payment_consumers.HANDLERS,
                        sessionmaker=payment_app.state.sessionmaker,
                        inbox_model=PaymentInbox,
                        bootstrap_servers=kafka_bootstrap,
                    ).run,
                    EventConsumer(
                        name=f"email-trace-{suffix}",
                        topics=email_consumers.TOPICS,
                        handlers=email_consumers.HANDLERS,
                        sessionmaker=email_app.state.sessionmaker,
                        inbox_model=EmailInbox,
                        bootstrap_servers=kafka_bootstrap,
                    ).run,
                    dispatcher.run,
                ]
                transport = httpx.ASGITransport(app=invoice_app)
                async with (
                    running(loops),
                    httpx.AsyncClient(transport=transport, base_url="http://invoice") as api,
                ):
                    client = await api.post(
                        "/api/clients",
                        json={"name": "John Doe", "email": "john.doe@example.com"},
                        headers=headers,
                    )
                    assert client.status_code == 201, client.text
                    exporter.clear()
                    paid = await api.post(
                        "/invoice",
                        json={
                            "jobDescription": "Software License Fee",
                            "amount": 99.99,
                            "customerId": client.json()["id"],
                            "card": CARD,
                        },
                        headers=headers,
                    )
                    assert paid.status_code == 201, paid.text
                    assert paid.json()["invoiceStatus"] == "PAID"
                    spans = await spans_until(
                        exporter,
                        {
                            "POST /invoice",
                            "process payment.succeeded",
                            "process invoice.status_changed",
                            "send email",
                        },
                    )

    request = one(spans, "POST /invoice")
    assert request.context is not None
    assert request.parent is None
    flow = trace_of(spans, request.context.trace_id)

    # The invoice service's request: its statements, and its call to the payment service,
    # whose server span continues the trace from the `traceparent` header.
    assert any(name.startswith("INSERT") for name in statements(flow, request))
    payment_request = one(flow, "POST /internal/invoice-payments")
    assert payment_request.kind == SpanKind.SERVER
    call = next(span for span in flow if span_id(span) == parent_id(payment_request))
    assert call.kind == SpanKind.CLIENT
    assert parent_id(call) == span_id(request)
    # The payment service's own statements and its call to FakePay.
    assert any(name.startswith("INSERT") for name in statements(flow, payment_request))
    fakepay_calls = [
        span
        for span in children(flow, payment_request)
        if span.kind == SpanKind.CLIENT and span.attributes and "db.system" not in span.attributes
    ]
    assert fakepay_calls

    # payment.succeeded, written by the payment request: sent by the payment relay and
    # handled by the invoice service, whose handler reads the invoice in the same trace.
    send_payment = one(flow, "send payment.events")
    assert send_payment.kind == SpanKind.PRODUCER
    assert parent_id(send_payment) == span_id(payment_request)
    succeeded = handler_of(flow, "payment.succeeded", "invoice-trace")
    assert succeeded.kind == SpanKind.CONSUMER
    assert parent_id(succeeded) == span_id(payment_request)
    assert any(name.startswith("SELECT") for name in statements(flow, succeeded))

    # The invoice's own events of the request (created, then paid) reach the payment
    # service's consumer in the same trace.
    sends = [span for span in flow if span.name == "send invoice.events"]
    assert len(sends) == 2
    assert all(parent_id(span) == span_id(request) for span in sends)
    status_changed = one(flow, "process invoice.status_changed")
    assert parent_id(status_changed) == span_id(request)

    # The email service's handler of payment.succeeded queues the client's receipt, and the
    # dispatcher's sending of it (its statements and its call to the provider) continues the
    # handler's trace.
    receipt_handler = handler_of(flow, "payment.succeeded", "email-trace")
    assert receipt_handler.kind == SpanKind.CONSUMER
    assert parent_id(receipt_handler) == span_id(payment_request)
    assert any(name.startswith("INSERT") for name in statements(flow, receipt_handler))
    sending = one(flow, "send email")
    assert parent_id(sending) == span_id(receipt_handler)
    assert sending.attributes is not None
    assert sending.attributes["email.kind"] == "receipt"
    assert any(name.startswith("UPDATE") for name in statements(flow, sending))
    provider_calls = [
        span
        for span in children(flow, sending)
        if span.kind == SpanKind.CLIENT and span.attributes and "db.system" not in span.attributes
    ]
    assert provider_calls
    message_id = str(sending.attributes["email.message_id"])
    assert mail_providers.counts()["mailgun"][message_id] == 1
    [receipt] = [m for m in mail_providers.messages() if m["send_id"] == message_id]
    assert receipt["recipient"] == "john.doe@example.com"
    assert receipt["subject"].startswith("Receipt for INV-")

    # The log lines of both services carry the trace: the invoice API's request line and
    # the payment service's line of the succeeded payment.
    trace_id = f"trace_id={request.context.trace_id:032x}"
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if trace_id in line and "path=/invoice " in line]
    assert [line for line in lines if trace_id in line and "payment_succeeded" in line]
