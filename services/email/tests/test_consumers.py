"""The events the service consumes: an invoice email queued once per send id, a notice for a
declined automatic charge, other payment failures ignored."""

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.s3 import S3Server
from mailer import consumers
from mailer.models import Message

from .factories import handle, payment_failed, put_pdf, send_requested


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
