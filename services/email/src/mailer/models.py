"""Tables of the email_svc schema."""

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BinaryUUID, service_metadata
from common.inbox import InboxMessageMixin
from common.outbox import OutboxMessageMixin, utcnow


class Base(DeclarativeBase):
    """The email_svc schema's registry."""

    metadata = service_metadata()


class MessageKind(StrEnum):
    INVOICE = "invoice"  # an owner sends an invoice to a client (invoice.send_requested)
    PAYMENT_FAILED = "payment_failed"  # a client's automatic charge was declined
    RECEIPT = "receipt"  # a client's card payment of an invoice went through


class MessageStatus(StrEnum):
    """Where a message stands, as the owner sees it.

    queued: accepted by us, waiting for a provider (also between rounds of failover).
    sending: a worker holds it and is handing it to a provider.
    sent: a provider accepted it. delivered / bounced: the provider's webhook said so.
    failed: no provider accepted it within the retry budget, or the message itself cannot be
        sent (its PDF is gone); the fee is given back.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    FAILED = "failed"


FINAL_STATUSES = (MessageStatus.DELIVERED, MessageStatus.BOUNCED, MessageStatus.FAILED)


class AttemptOutcome(StrEnum):
    """One hand-over of a message to one provider.

    pending: written and committed before the provider is called.
    accepted: the provider took it. rejected: it answered that it did not (5xx, 401, 429...),
    or it could not be reached: nothing was sent. in_doubt: the call ended without an answer
    (timeout, dropped connection) and the provider may have the message. not_found: an
    attempt in doubt (or left pending by a worker that died) that the provider, asked later,
    does not know: nothing was sent.
    """

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IN_DOUBT = "in_doubt"
    NOT_FOUND = "not_found"


class Message(Base):
    """One email to one recipient, from its request to its last known delivery status.

    The id is the invoice service's send_id (or, for a notice, derived from the event id), so
    a redelivered request finds the row instead of making a second message. The PDF is not
    stored here: it is fetched from object storage by bucket and key when the message is sent
    (the invoice service keeps it).
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index(None, "owner_id", "created_at", "id"),
        Index(None, "owner_id", "invoice_id", "created_at", "id"),
        # The listing filtered by status ("all my bounces"): one range per status.
        Index(None, "owner_id", "status", "created_at", "id"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "provider", "provider_message_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    kind: Mapped[str] = mapped_column(String(24))
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(BinaryUUID, nullable=True)
    recipient_email: Mapped[str] = mapped_column(String(320))
    recipient_name: Mapped[str] = mapped_column(String(200))
    reply_to: Mapped[str | None] = mapped_column(String(320), nullable=True)
    sender_name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    attachment_bucket: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attachment_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    attachment_etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attachment_filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attachment_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    fee_reference: Mapped[str | None] = mapped_column(String(100), nullable=True)
    fee_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), nullable=True)
    fee_currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    # The provider that accepted it, and the id that provider gave it.
    provider: Mapped[str | None] = mapped_column(String(16), nullable=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Rounds through the provider order that ended with none accepting it.
    rounds: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    # While set and in the future, one worker holds the message; after it, any worker may
    # take it over (the holder died or its call is in doubt) and settles the last attempt.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Whose claim it is: a worker whose lease was taken over finds another token here and
    # touches the message no more.
    lease_token: Mapped[str | None] = mapped_column(String(36), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The trace of the event that queued it (W3C trace context): the worker sends it in a
    # span of that trace, so one trace reaches from the owner's request to the provider.
    traceparent: Mapped[str | None] = mapped_column(String(55), nullable=True)
    tracestate: Mapped[str | None] = mapped_column(String(512), nullable=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Attempt(Base):
    """One call to one provider for one message; committed as pending before the call."""

    __tablename__ = "attempts"
    __table_args__ = (Index(None, "message_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    provider: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(200), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class StatusChange(Base):
    """The history of a message's status, with the provider that was involved."""

    __tablename__ = "status_changes"
    __table_args__ = (
        Index(None, "message_id", "id"),
        Index(None, "provider", "status", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    status: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(16), nullable=True)
    detail: Mapped[str | None] = mapped_column(String(200), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class WebhookReceipt(Base):
    """A provider's webhook event (or signature token) already applied: a replay is refused."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (UniqueConstraint("provider", "receipt_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(16))
    receipt_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class OutboxMessage(OutboxMessageMixin, Base):
    pass


class InboxMessage(InboxMessageMixin, Base):
    pass
