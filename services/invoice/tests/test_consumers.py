"""The worker's consumer on the real broker. User events: the owner's profile kept up to
date, forgotten on deletion, and the deleted account's tokens refused here. Payment events:
an invoice paid by a payment the invoice API never recorded becomes PAID, once."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from common.inbox import EventConsumer
from common.kafka import ensure_topics
from common.testing.identity import TestIssuer
from invoice import consumers
from invoice.models import InboxMessage, Invoice, OutboxMessage, Owner

from .factories import create_client, create_invoice


def user_event(event_type: str, user_id: uuid.UUID, data: dict[str, Any]) -> CloudEvent:
    """An event shaped as the user service publishes it."""
    return CloudEvent(
        source="/services/user",
        type=event_type,
        subject=str(user_id),
        data={"user_id": str(user_id), **data},
    )


def profile(name: str, company: str) -> dict[str, Any]:
    return {
        "email": "owner@example.com",
        "name": name,
        "company_name": company,
        "address": {
            "line1": "1 Market St",
            "line2": None,
            "city": "Springfield",
            "region": None,
            "postal_code": "12345",
            "country": "US",
        },
    }


@pytest.fixture(scope="module")
async def running_consumer(
    kafka_bootstrap: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[None]:
    """The worker's consumer group, as the worker wires it."""
    consumer = EventConsumer(
        name=consumers.CONSUMER_GROUP,
        topics=consumers.TOPICS,
        handlers=consumers.HANDLERS,
        sessionmaker=sessionmaker,
        inbox_model=InboxMessage,
        bootstrap_servers=kafka_bootstrap,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 20)


async def publish(
    bootstrap: str, *events: CloudEvent, key: str | None = None, topic: str = consumers.USER_TOPIC
) -> None:
    """Send the events in order; a shared key puts them on one partition, in that order."""
    await ensure_topics(bootstrap, consumers.TOPICS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic, event.model_dump_json().encode(), key=(key or event.subject).encode()
            )
    finally:
        await producer.stop()


async def owner_row(
    sessionmaker: async_sessionmaker[AsyncSession], owner_id: uuid.UUID, ready: Any
) -> Owner:
    for _ in range(200):
        async with sessionmaker() as session:
            owner = await session.get(Owner, owner_id)
        if owner is not None and ready(owner):
            return owner
        await asyncio.sleep(0.1)
    raise AssertionError("the owner's row never reached the expected state")


async def test_the_latest_profile_is_kept_and_a_redelivery_changes_nothing(
    running_consumer: None,
    kafka_bootstrap: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    user_id, marker_id = uuid.uuid4(), uuid.uuid4()
    registered = user_event("user.registered", user_id, profile("Ada", "Ada & Co"))
    updated = user_event("user.updated", user_id, profile("Ada Lovelace", "Analytical Ltd"))
    # Another user's event on the same partition, after the redelivery: once it is handled,
    # the redelivered `registered` before it has been seen too.
    marker = user_event("user.registered", marker_id, profile("Marker", "Marker Inc"))

    await publish(kafka_bootstrap, registered, updated, registered, marker, key=str(user_id))

    await owner_row(sessionmaker, marker_id, lambda o: o.name == "Marker")
    async with sessionmaker() as session:
        owner = await session.get(Owner, user_id)
    assert owner is not None
    assert (owner.name, owner.company_name, owner.city) == (
        "Ada Lovelace",
        "Analytical Ltd",
        "Springfield",
    )


async def test_a_deleted_accounts_tokens_are_refused_and_its_profile_forgotten(
    running_consumer: None,
    kafka_bootstrap: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
) -> None:
    user_id = uuid.uuid4()
    auth = test_issuer.headers(user_id)
    client = await create_client(api, auth)
    await create_invoice(api, auth, client["id"])
    await publish(
        kafka_bootstrap, user_event("user.registered", user_id, profile("Bob", "Bob's Bikes"))
    )
    await owner_row(sessionmaker, user_id, lambda o: o.name == "Bob")

    await publish(kafka_bootstrap, user_event("user.deleted", user_id, {}))

    owner = await owner_row(sessionmaker, user_id, lambda o: o.deleted_at is not None)
    assert (owner.email, owner.name, owner.company_name, owner.address_line1) == (None,) * 4
    assert owner.deleted_at <= datetime.now(UTC).replace(tzinfo=None)
    for _ in range(50):
        response = await api.get("/api/invoices", headers=auth)
        if response.status_code == 401:
            break
        await asyncio.sleep(0.2)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    created = await api.post(
        "/api/clients", json={"name": "X", "email": "x@example.com"}, headers=auth
    )
    assert created.status_code == 401
    someone_else = await api.get("/api/invoices", headers=test_issuer.headers(uuid.uuid4()))
    assert someone_else.status_code == 200


def payment_succeeded(
    owner_id: uuid.UUID, invoice_id: str | None, kind: str = "invoice"
) -> CloudEvent:
    """An event shaped as the payment service publishes it."""
    return CloudEvent(
        source="/services/payment",
        type="payment.succeeded",
        subject=str(owner_id),
        data={
            "payment_id": str(uuid.uuid4()),
            "invoice_id": invoice_id,
            "owner_id": str(owner_id),
            "amount": "199.99",
            "currency": "USD",
            "kind": kind,
            "card_last4": "5678",
            "occurred_at": datetime.now(UTC).isoformat(),
        },
    )


async def invoice_paid_state(
    sessionmaker: async_sessionmaker[AsyncSession], invoice_id: str
) -> tuple[str, int]:
    """The invoice's status and the number of status changes announced for it."""
    async with sessionmaker() as session:
        invoice = await session.get(Invoice, uuid.UUID(invoice_id))
        changes = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.payload.contains(invoice_id),
                OutboxMessage.payload.contains('"invoice.status_changed"'),
            )
        )
    assert invoice is not None
    return invoice.status, changes or 0


async def until_paid(sessionmaker: async_sessionmaker[AsyncSession], invoice_id: str) -> None:
    for _ in range(200):
        if (await invoice_paid_state(sessionmaker, invoice_id))[0] == "paid":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the invoice never became paid")


async def test_a_succeeded_payment_marks_its_invoice_paid_once(
    running_consumer: None,
    kafka_bootstrap: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
) -> None:
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])
    other = await create_invoice(api, auth, client["id"])
    topup_target = await create_invoice(api, auth, client["id"])
    marker = await create_invoice(api, auth, client["id"])
    paid = payment_succeeded(owner, invoice["id"])
    # A second payment event for the paid invoice (a late one from a settled attempt), a
    # payment of the same invoice id by another owner, and a wallet top-up carrying an
    # invoice id: none changes anything.
    late = payment_succeeded(owner, invoice["id"])
    strangers = payment_succeeded(uuid.uuid4(), other["id"])
    topup = payment_succeeded(owner, topup_target["id"], kind="topup")

    await publish(kafka_bootstrap, paid, topic=consumers.PAYMENT_TOPIC)
    await until_paid(sessionmaker, invoice["id"])
    await publish(
        kafka_bootstrap,
        paid,  # redelivered
        late,
        strangers,
        topup,
        payment_succeeded(owner, marker["id"]),
        key=str(owner),
        topic=consumers.PAYMENT_TOPIC,
    )
    # The marker comes last on the same partition: once it is paid, the others were handled.
    await until_paid(sessionmaker, marker["id"])

    assert await invoice_paid_state(sessionmaker, invoice["id"]) == ("paid", 1)
    assert await invoice_paid_state(sessionmaker, other["id"]) == ("pending", 0)
    assert await invoice_paid_state(sessionmaker, topup_target["id"]) == ("pending", 0)
    read = await api.get(f"/invoice/{invoice['id']}", headers=auth)
    assert read.json()["invoiceStatus"] == "PAID"


def payment_failed(
    owner_id: uuid.UUID, invoice_id: str, *, kind: str = "autopay", final: bool = True
) -> CloudEvent:
    """A billing-run charge the payment service gave up on (final) or will retry."""
    return CloudEvent(
        source="/services/payment",
        type="payment.failed",
        subject=str(owner_id),
        data={
            "payment_id": str(uuid.uuid4()),
            "invoice_id": invoice_id,
            "owner_id": str(owner_id),
            "amount": "199.99",
            "currency": "USD",
            "kind": kind,
            "card_last4": "5678",
            "failure_code": "currency_mismatch",
            "occurred_at": "2027-01-01T10:00:00Z",
            "client_id": 1,
            "client_email": "billing@acme.test",
            "final": final,
            "next_attempt_at": None,
        },
    )


async def test_a_final_autopay_failure_marks_the_invoice_failed_with_its_reason(
    sessionmaker: async_sessionmaker[AsyncSession],
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
) -> None:
    client = await create_client(api, auth)
    failed = await create_invoice(api, auth, client["id"])
    retried = await create_invoice(api, auth, client["id"])
    card = await create_invoice(api, auth, client["id"])
    for event in (
        payment_failed(owner, failed["id"]),
        payment_failed(owner, retried["id"], final=False),
        payment_failed(owner, card["id"], kind="invoice"),
    ):
        async with sessionmaker() as session, session.begin():
            await consumers.on_payment_failed(session, event)

    shown = (await api.get(f"/api/invoices/{failed['id']}", headers=auth)).json()
    assert (shown["status"], shown["failure_reason"]) == ("failed", "currency_mismatch")
    for untouched in (retried, card):
        shown = (await api.get(f"/api/invoices/{untouched['id']}", headers=auth)).json()
        assert (shown["status"], shown["failure_reason"]) == ("pending", None)
    async with sessionmaker() as session:
        changes = (
            await session.scalars(
                select(OutboxMessage.payload).where(OutboxMessage.payload.contains(failed["id"]))
            )
        ).all()
    assert any('"status":"failed"' in payload for payload in changes)

    # A person has the client pay; the charge's success (autopay or card) makes it PAID.
    async with sessionmaker() as session, session.begin():
        await consumers.on_payment_succeeded(
            session, payment_succeeded(owner, failed["id"], kind="autopay")
        )
    shown = (await api.get(f"/api/invoices/{failed['id']}", headers=auth)).json()
    assert shown["status"] == "paid"
