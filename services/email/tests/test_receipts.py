"""Receipts: a client's card payment of an invoice (`payment.succeeded`) makes one receipt to
the client, sent once through the providers like every email, without a fee, and showing no
more of the card than its last four digits. Top-ups send nothing."""

import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mailer import consumers
from mailer.dispatcher import Dispatcher
from mailer.models import Message, OutboxMessage, StatusChange
from simulators.mail_testing import MailProvidersServer

from .factories import handle, payment_succeeded
from .test_dispatcher import carried, drain, statuses

DispatcherFactory = Callable[..., Dispatcher]


def receipt_id(payment_id: str) -> uuid.UUID:
    return uuid.uuid5(consumers.NOTICE_NAMESPACE, f"payment.succeeded:{payment_id}")


async def messages_of(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> list[Message]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(Message).where(Message.owner_id == owner))).all())


async def everything_stored(
    sessionmaker: async_sessionmaker[AsyncSession], message_id: uuid.UUID
) -> str:
    """The message's row, its history and its events, as one text to search."""
    async with sessionmaker() as session:
        message = await session.get(Message, message_id)
        assert message is not None
        changes = (
            await session.scalars(select(StatusChange).where(StatusChange.message_id == message_id))
        ).all()
        events = (
            await session.scalars(
                select(OutboxMessage).where(OutboxMessage.message_key == str(message.owner_id))
            )
        ).all()
    columns = [str(getattr(message, c.key)) for c in Message.__table__.columns]
    history = [f"{c.status} {c.provider} {c.detail}" for c in changes]
    payloads = [event.payload for event in events]
    return "\n".join(columns + history + payloads)


def test_the_worker_handles_payment_succeeded() -> None:
    assert consumers.HANDLERS["payment.succeeded"] is consumers.on_payment_succeeded


async def test_a_card_payment_sends_one_receipt_to_the_client(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    event = payment_succeeded(owner)
    await handle(sessionmaker, event)
    message_id = receipt_id(event.data["payment_id"])

    [receipt] = await messages_of(sessionmaker, owner)
    assert receipt.id == message_id
    assert receipt.kind == "receipt"
    assert receipt.status == "queued"
    assert str(receipt.invoice_id) == event.data["invoice_id"]
    assert receipt.recipient_email == "payer@example.com"
    assert receipt.subject == "Receipt for INV-000012"
    assert receipt.fee_reference is None
    assert receipt.fee_amount is None
    assert receipt.attachment_key is None
    assert "99.99 USD" in receipt.text_body
    assert "**** 5678" in receipt.text_body
    assert "**** 5678" in receipt.html_body

    await drain(make_dispatcher())
    assert carried(simulators, message_id) == {"sendgrid": 1}
    [copy] = [m for m in simulators.messages() if m["send_id"] == str(message_id)]
    assert copy["recipient"] == "payer@example.com"
    assert copy["subject"] == "Receipt for INV-000012"
    assert await statuses(sessionmaker, message_id) == ["queued:-", "sending:-", "sent:sendgrid"]


async def test_a_redelivered_payment_queues_and_sends_nothing_more(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    event = payment_succeeded(owner, kind="autopay")
    await handle(sessionmaker, event)
    await drain(make_dispatcher())
    # The same payment again: the same envelope redelivered, and a re-published one.
    await handle(sessionmaker, event)
    await handle(sessionmaker, payment_succeeded(owner, payment_id=event.data["payment_id"]))
    await drain(make_dispatcher())

    message_id = receipt_id(event.data["payment_id"])
    assert [m.id for m in await messages_of(sessionmaker, owner)] == [message_id]
    assert carried(simulators, message_id) == {"sendgrid": 1}
    assert (await statuses(sessionmaker, message_id))[-1] == "sent:sendgrid"


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "topup", "invoice_id": None, "client_email": None, "invoice_number": None},
        # A top-up never has an invoice, even were it to carry an address.
        {"kind": "topup", "invoice_id": None},
        # Events from before payments named the client.
        {"client_email": None, "client_name": None, "invoice_number": None},
    ],
)
async def test_top_ups_and_payments_without_a_client_address_send_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    owner: uuid.UUID,
    overrides: dict[str, object],
) -> None:
    event = payment_succeeded(owner, **overrides)
    for key in [k for k, v in overrides.items() if v is None]:
        event.data.pop(key)
    await handle(sessionmaker, event)
    assert await messages_of(sessionmaker, owner) == []


async def test_no_more_of_the_card_than_its_last_four_is_kept_or_sent(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    """Even an event that carried a whole card number shows only its last four digits."""
    number = "4111111111119876"
    event = payment_succeeded(owner, card_last4=number)
    await handle(sessionmaker, event)
    await drain(make_dispatcher())
    message_id = receipt_id(event.data["payment_id"])

    stored = await everything_stored(sessionmaker, message_id)
    assert "**** 9876" in stored
    assert number not in stored
    assert "411111" not in stored
    [copy] = [m for m in simulators.messages() if m["send_id"] == str(message_id)]
    assert number not in json.dumps(copy)


async def test_the_receipt_is_listed_with_the_owners_and_the_invoices_emails(
    sessionmaker: async_sessionmaker[AsyncSession],
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
) -> None:
    event = payment_succeeded(owner)
    await handle(sessionmaker, event)
    message_id = str(receipt_id(event.data["payment_id"]))

    listing = (await api.get("/api/emails", headers=auth)).json()
    assert [(e["id"], e["kind"]) for e in listing["items"]] == [(message_id, "receipt")]
    invoice_id = event.data["invoice_id"]
    of_invoice = (await api.get(f"/api/invoices/{invoice_id}/emails", headers=auth)).json()
    [listed] = of_invoice["items"]
    assert listed["id"] == message_id
    assert listed["subject"] == "Receipt for INV-000012"
    assert listed["history"][0]["status"] == "queued"
