"""Domain operations of the email service: queue messages, move their status, list them.

Functions here stage changes and outbox events in the caller's transaction; the edge
(a route, a consumer, the dispatcher) commits. Sending itself is in dispatcher.py.
"""

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import InvalidInput
from common.events import new_event
from common.logging import get_logger
from common.outbox import add_event, utcnow
from common.pagination import CursorCodec, Page
from common.tracing import trace_context
from mailer import compose, repository
from mailer.events import EMAIL_STATUS_CHANGED, SOURCE, TOPIC, EmailStatusChanged, Fee
from mailer.exceptions import WebhookRefused
from mailer.models import (
    FINAL_STATUSES,
    Message,
    MessageKind,
    MessageStatus,
    OutboxMessage,
    StatusChange,
)

log = get_logger(__name__)

# Which status may follow which. A webhook may tell of delivery before the worker has
# recorded the provider's acceptance (the worker died in between): sending -> delivered.
ALLOWED: dict[MessageStatus, frozenset[MessageStatus]] = {
    MessageStatus.QUEUED: frozenset({MessageStatus.SENDING, MessageStatus.FAILED}),
    MessageStatus.SENDING: frozenset(
        {
            MessageStatus.QUEUED,
            MessageStatus.SENT,
            MessageStatus.DELIVERED,
            MessageStatus.BOUNCED,
            MessageStatus.FAILED,
        }
    ),
    MessageStatus.SENT: frozenset(
        {MessageStatus.DELIVERED, MessageStatus.BOUNCED, MessageStatus.FAILED}
    ),
    MessageStatus.DELIVERED: frozenset(),
    MessageStatus.BOUNCED: frozenset(),
    MessageStatus.FAILED: frozenset(),
}


# The rule the invoice and user APIs check an address with when it is typed in (pydantic's
# EmailStr: email-validator's syntax and its special-use names such as .test, .invalid and
# .local, no DNS). Addresses also arrive by other ways (a client imported from the billing
# platform, an owner's address from their identity provider, a saved card's client), so a
# consumer checks again rather than trusting that every producer did.
_ADDRESS = TypeAdapter(EmailStr)
# messages.recipient_email's width: an address too long for it is not one anyway.
_ADDRESS_COLUMN = 320


def address_problem(address: str) -> str | None:
    """Why no provider could carry mail to this address, or None when it is one."""
    try:
        _ADDRESS.validate_python(address)
    except ValidationError as exc:
        reason = exc.errors()[0].get("ctx", {}).get("reason") or exc.errors()[0]["msg"]
        return f"not an address mail can be sent to: {reason}"
    return None


@dataclass(frozen=True)
class InvoiceEmail:
    """What invoice.send_requested asks for, as the consumer read it."""

    send_id: uuid.UUID
    owner_id: uuid.UUID
    invoice_id: uuid.UUID
    recipient_email: str
    recipient_name: str
    reply_to: str | None
    sender_name: str
    subject: str
    body: compose.Body
    pdf_bucket: str
    pdf_key: str
    pdf_etag: str
    pdf_filename: str
    pdf_size: int
    fee_reference: str
    fee_amount: Decimal
    fee_currency: str
    requested_at: datetime


@dataclass(frozen=True)
class Notice:
    """A message without attachment or fee, sent on the platform's account."""

    message_id: uuid.UUID
    owner_id: uuid.UUID
    invoice_id: uuid.UUID | None
    kind: MessageKind
    recipient_email: str
    recipient_name: str
    sender_name: str
    subject: str
    body: compose.Body
    requested_at: datetime


def change_status(
    session: AsyncSession,
    message: Message,
    status: MessageStatus,
    *,
    provider: str | None = None,
    detail: str | None = None,
) -> bool:
    """Move a message on, with its history row and its event; False when the move is not
    allowed from where it stands (a late or repeated report), and nothing changes then."""
    previous = MessageStatus(message.status) if message.status else None
    if previous is not None and status not in ALLOWED[previous]:
        return False
    now = utcnow()
    message.status = status
    message.updated_at = now
    if status == MessageStatus.FAILED:
        message.failure_reason = (detail or "")[:200] or None
    session.add(
        StatusChange(
            message_id=message.id,
            status=status,
            provider=provider,
            detail=(detail or None) and detail[:200],
            occurred_at=now,
        )
    )
    fee = None
    if message.fee_reference and message.fee_amount is not None and message.fee_currency:
        fee = Fee(
            reference=message.fee_reference,
            amount=message.fee_amount,
            currency=message.fee_currency,
        )
    payload = EmailStatusChanged(
        message_id=message.id,
        owner_id=message.owner_id,
        invoice_id=message.invoice_id,
        kind=message.kind,
        status=status,
        previous_status=previous,
        provider=provider or message.provider,
        reason=detail if status in (MessageStatus.FAILED, MessageStatus.BOUNCED) else None,
        fee=fee,
        occurred_at=now,
    )
    add_event(
        session,
        OutboxMessage,
        TOPIC,
        new_event(SOURCE, EMAIL_STATUS_CHANGED, message.owner_id, payload),
    )
    return True


def _keep_trace(message: Message) -> None:
    """The context of the handler queueing the message, for the worker that sends it."""
    context = trace_context()
    message.traceparent = context.get("traceparent")
    message.tracestate = context.get("tracestate")


async def queue_invoice_email(session: AsyncSession, request: InvoiceEmail) -> Message:
    """Queue an invoice email once per send_id; a repeated request returns the first."""
    existing = await repository.get_message(session, request.send_id)
    if existing is not None:
        return existing
    reply_to = request.reply_to
    if reply_to is not None and address_problem(reply_to):
        # The owner's own address is only a courtesy header: the email goes without it.
        log.warning("email_reply_to_dropped", send_id=str(request.send_id))
        reply_to = None
    now = utcnow()
    message = Message(
        id=request.send_id,
        owner_id=request.owner_id,
        kind=MessageKind.INVOICE,
        invoice_id=request.invoice_id,
        recipient_email=request.recipient_email[:_ADDRESS_COLUMN],
        recipient_name=request.recipient_name,
        reply_to=reply_to,
        sender_name=request.sender_name,
        subject=request.subject,
        text_body=request.body.text,
        html_body=request.body.html,
        attachment_bucket=request.pdf_bucket,
        attachment_key=request.pdf_key,
        attachment_etag=request.pdf_etag,
        attachment_filename=request.pdf_filename,
        attachment_size=request.pdf_size,
        fee_reference=request.fee_reference,
        fee_amount=request.fee_amount,
        fee_currency=request.fee_currency,
        status="",
        rounds=0,
        next_attempt_at=now,
        requested_at=request.requested_at.replace(tzinfo=None),
        created_at=now,
        updated_at=now,
    )
    _queue(session, message, request.recipient_email)
    await session.flush()
    return message


def _queue(session: AsyncSession, message: Message, recipient: str) -> None:
    """Add a new message as queued; one to an address no provider could carry fails at once,
    with the reason, so that the owner sees why (and an invoice email's fee comes back)."""
    _keep_trace(message)
    session.add(message)
    change_status(session, message, MessageStatus.QUEUED)
    problem = address_problem(recipient)
    if problem is not None:
        change_status(session, message, MessageStatus.FAILED, detail=problem)


async def queue_notice(session: AsyncSession, notice: Notice) -> Message:
    """Queue a notice once per id (derived from the event that asked for it)."""
    existing = await repository.get_message(session, notice.message_id)
    if existing is not None:
        return existing
    now = utcnow()
    message = Message(
        id=notice.message_id,
        owner_id=notice.owner_id,
        kind=notice.kind,
        invoice_id=notice.invoice_id,
        recipient_email=notice.recipient_email[:_ADDRESS_COLUMN],
        recipient_name=notice.recipient_name,
        reply_to=None,
        sender_name=notice.sender_name,
        subject=notice.subject,
        text_body=notice.body.text,
        html_body=notice.body.html,
        status="",
        rounds=0,
        next_attempt_at=now,
        requested_at=notice.requested_at.replace(tzinfo=None),
        created_at=now,
        updated_at=now,
    )
    _queue(session, message, notice.recipient_email)
    await session.flush()
    return message


# --- delivery reports (webhooks) ------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryReport:
    """One provider event about one message, verified and parsed by webhooks.py."""

    provider: str
    receipt_id: str  # the provider's id of this event: applied once
    status: MessageStatus  # sent, delivered or bounced
    send_id: uuid.UUID | None  # our id, when the provider echoes it
    provider_message_id: str | None
    detail: str | None


async def apply_report(session: AsyncSession, report: DeliveryReport) -> bool:
    """Apply one report once; False when it was seen before or changes nothing."""
    if not await repository.record_receipt(session, report.provider, report.receipt_id):
        return False
    message = None
    if report.send_id is not None:
        message = await repository.lock_message(session, report.send_id)
    if message is None and report.provider_message_id:
        message = await repository.message_by_provider_id(
            session, report.provider, report.provider_message_id
        )
    if message is None:
        log.info("webhook_for_unknown_message", provider=report.provider)
        return False
    if message.status in FINAL_STATUSES:
        return False
    if message.status in (MessageStatus.QUEUED, MessageStatus.SENDING):
        # The provider has it, whatever our worker recorded (or did not, if it died): this
        # settles an attempt in doubt, and the message is never handed to another provider.
        message.provider = report.provider
        message.provider_message_id = message.provider_message_id or report.provider_message_id
        message.lease_until = None
        message.lease_token = None
        if message.status == MessageStatus.QUEUED:
            change_status(session, message, MessageStatus.SENDING, provider=report.provider)
        if report.status != MessageStatus.SENT:
            change_status(session, message, MessageStatus.SENT, provider=report.provider)
    if report.status == MessageStatus.SENT and message.status == MessageStatus.SENT:
        return False
    return change_status(
        session, message, report.status, provider=report.provider, detail=report.detail
    )


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageView:
    message: Message
    history: list[StatusChange]


async def get_owned(
    session: AsyncSession, owner_id: uuid.UUID, message_id: uuid.UUID
) -> MessageView | None:
    found = await repository.owned_message(session, owner_id, message_id)
    return None if found is None else MessageView(*found)


async def list_messages(
    session: AsyncSession,
    codec: CursorCodec,
    owner_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    invoice_id: uuid.UUID | None = None,
    statuses: Collection[MessageStatus] | None = None,
) -> Page[MessageView]:
    """One page of the owner's messages (of one invoice, when given; in one of `statuses`,
    when given), newest first. The cursor is bound to the listing and its filter."""
    wanted = sorted(set(statuses or ()))
    listing = "emails" if invoice_id is None else f"emails:{invoice_id}"
    if wanted:
        listing += "|status=" + ",".join(wanted)
    after = None
    if cursor is not None:
        position = codec.decode(cursor)
        if position.get("q") != listing:
            raise InvalidInput("The cursor belongs to a different listing", field="cursor")
        try:
            after = (
                datetime.fromisoformat(str(position["at"])),
                uuid.UUID(hex=str(position["id"])),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidInput("The cursor is not one this API issued", field="cursor") from None
    rows = await repository.list_messages(session, owner_id, invoice_id, wanted, after, limit + 1)
    next_cursor = None
    if len(rows) > limit:
        last, _ = rows[limit - 1]
        next_cursor = codec.encode(
            {"q": listing, "at": last.created_at.isoformat(), "id": last.id.hex}
        )
    return Page([MessageView(row, changes) for row, changes in rows[:limit]], next_cursor)


def retry_delay(settings_base: float, settings_max: float, rounds: int) -> timedelta:
    """The wait before the next round: doubling from the base, capped."""
    return timedelta(seconds=min(settings_max, settings_base * (2 ** max(0, rounds - 1))))


async def apply_webhook(
    session: AsyncSession, provider: str, delivery_id: str, reports: list[DeliveryReport]
) -> tuple[int, int]:
    """Apply one verified webhook delivery; a delivery seen before is refused as a replay.

    Returns (applied, ignored). The caller's transaction holds it all: a refusal rolls back.
    """
    if not await repository.record_receipt(session, provider, f"delivery:{delivery_id}"):
        raise WebhookRefused("This webhook was received before: a replay")
    applied = 0
    for report in reports:
        if await apply_report(session, report):
            applied += 1
    return applied, len(reports) - applied
