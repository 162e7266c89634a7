"""The events the service consumes: an invoice email queued once per send id, a notice for a
declined automatic charge, other payment failures ignored; an address no provider could carry
fails its email with the reason instead of dead-lettering the event."""

import json
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.s3 import S3Server
from mailer import consumers
from mailer.models import Message, OutboxMessage

from .factories import handle, payment_failed, payment_succeeded, put_pdf, send_requested


def test_the_worker_listens_to_both_topics() -> None:
    assert set(consumers.TOPICS) == {"invoice.events", "payment.events"}
    assert consumers.HANDLERS["invoice.send_requested"] is consumers.on_send_requested
    assert consumers.HANDLERS["payment.failed"] is consumers.on_payment_failed


async def count(sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).where(Message.owner_id == owner)) or 0)


async def test_a_send_request_is_queued_with_its_fee_and_claim(
    sessionmaker: async_sessionmaker[AsyncSession], aws: S3Server, owner: uuid.UUID
) -> None:
    send_id = uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/INV-0001.pdf")
    await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id))
    await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id))

    assert await count(sessionmaker, owner) == 1
    async with sessionmaker() as session:
        queued = await session.get(Message, send_id)
    assert queued is not None
    assert queued.status == "queued"
    assert queued.fee_reference == f"email-send:{send_id}"
    assert str(queued.fee_amount) == "0.50"
    assert queued.attachment_key == pdf["key"]
    assert queued.attachment_etag == pdf["etag"]
    assert "INV-0001" in queued.text_body
    assert "99.99 USD" in queued.text_body


async def test_a_declined_autopay_queues_one_notice_without_fee(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    event = payment_failed(owner)
    await handle(sessionmaker, event)
    # The same failure again under a new envelope (a re-published event).
    await handle(sessionmaker, payment_failed(owner, payment_id=event.data["payment_id"]))

    async with sessionmaker() as session:
        notices = (await session.scalars(select(Message).where(Message.owner_id == owner))).all()
    [notice] = notices
    assert notice.kind == "payment_failed"
    assert notice.recipient_email == "payer@example.com"
    assert notice.fee_reference is None
    assert notice.attachment_key is None
    assert "2026-12-07" in notice.text_body


async def test_other_payment_failures_are_ignored(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    await handle(sessionmaker, payment_failed(owner, kind="invoice"))
    await handle(sessionmaker, payment_failed(owner, kind="topup"))
    assert await count(sessionmaker, owner) == 0


async def test_line_breaks_in_headers_become_spaces(
    sessionmaker: async_sessionmaker[AsyncSession], aws: S3Server, owner: uuid.UUID
) -> None:
    """A subject with a line break would inject a header: it is kept on one line."""
    send_id = uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/INV-0001.pdf")
    event = send_requested(
        owner,
        pdf,
        send_id=send_id,
        subject="Invoice\r\nBcc: victim@example.com",
        sender_name="A\nB",
    )
    await handle(sessionmaker, event)
    async with sessionmaker() as session:
        queued = await session.get(Message, send_id)
    assert queued is not None
    assert queued.subject == "Invoice Bcc: victim@example.com"
    assert queued.sender_name == "A B"


async def status_events(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID, message_id: uuid.UUID
) -> list[dict[str, object]]:
    """The email.status_changed events the message's changes put in the outbox, in order."""
    async with sessionmaker() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.message_key == str(owner))
                .order_by(OutboxMessage.id)
            )
        ).all()
    found = [json.loads(row.payload)["data"] for row in rows]
    return [data for data in found if data["message_id"] == str(message_id)]


async def test_a_notice_to_an_address_no_provider_could_carry_fails_with_the_reason(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    """A special-use domain (.test) that the invoice API would have refused, arriving with a
    client saved another way: the handler does not raise (the inbox would dead-letter the
    event, and the notice would be lost without a trace); the notice is failed, with why."""
    event = payment_failed(owner, client_email="payer@billing.test")
    await handle(sessionmaker, event)

    async with sessionmaker() as session:
        [notice] = (await session.scalars(select(Message).where(Message.owner_id == owner))).all()
    assert notice.status == "failed"
    assert notice.failure_reason is not None
    assert "special-use or reserved" in notice.failure_reason
    assert [e["status"] for e in await status_events(sessionmaker, owner, notice.id)] == [
        "queued",
        "failed",
    ]


async def test_an_invoice_email_to_an_unusable_address_fails_and_carries_its_fee_back(
    sessionmaker: async_sessionmaker[AsyncSession], aws: S3Server, owner: uuid.UUID
) -> None:
    """The failed event names the fee, which is what the payment service refunds."""
    send_id = uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/INV-0001.pdf")
    await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id, recipient="a..b@x.com"))

    async with sessionmaker() as session:
        message = await session.get(Message, send_id)
    assert message is not None
    assert message.status == "failed"
    *_, failed = await status_events(sessionmaker, owner, send_id)
    assert failed["status"] == "failed"
    assert failed["fee"] == {
        "reference": f"email-send:{send_id}",
        "amount": "0.50",
        "currency": "USD",
    }
    assert "two periods" in str(failed["reason"])


async def test_an_owners_unusable_reply_to_is_left_off_and_the_email_still_goes(
    sessionmaker: async_sessionmaker[AsyncSession], aws: S3Server, owner: uuid.UUID
) -> None:
    send_id = uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/INV-0001.pdf")
    event = send_requested(owner, pdf, send_id=send_id, reply_to="owner@corp.local")
    await handle(sessionmaker, event)

    async with sessionmaker() as session:
        message = await session.get(Message, send_id)
    assert message is not None
    assert message.status == "queued"
    assert message.reply_to is None


async def test_a_receipt_to_an_unusable_address_fails_rather_than_going_to_a_provider(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    await handle(sessionmaker, payment_succeeded(owner, client_email="payer@clients.invalid"))

    async with sessionmaker() as session:
        [receipt] = (await session.scalars(select(Message).where(Message.owner_id == owner))).all()
    assert receipt.kind == "receipt"
    assert receipt.status == "failed"
