"""Tables of the invoice_svc schema."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BinaryUUID, service_metadata
from common.idempotency import IdempotencyKeyMixin
from common.ids import uuid7
from common.inbox import InboxMessageMixin
from common.outbox import OutboxMessageMixin, utcnow


class Base(DeclarativeBase):
    """The invoice_svc schema's registry."""

    metadata = service_metadata()


class InvoiceStatus(StrEnum):
    """Stored as text; listings sorted by status follow this text's alphabetical order."""

    PENDING = "pending"
    PAST_DUE = "past_due"
    PAID = "paid"
    VOID = "void"
    # The monthly billing run could not charge it and will not retry (customer unknown to
    # the provider, wrong currency, an unknown error, declines past the last retry): a
    # person acts. Still payable by card, and voidable.
    FAILED = "failed"


OPEN_STATUSES = (InvoiceStatus.PENDING, InvoiceStatus.PAST_DUE, InvoiceStatus.FAILED)


class Owner(Base):
    """The invoicing profile of a user, copied from `user.registered` / `user.updated`.

    What an invoice's header needs (who bills, from where), and whether the account was
    deleted: tokens of a deleted account are refused here too.
    """

    __tablename__ = "owners"

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    company_name: Mapped[str | None] = mapped_column(String(200))
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(2))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    # Goes up whenever a field the PDF's header shows changes: part of every PDF's version,
    # so a new company name or address renders the owner's invoices anew.
    profile_version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class InvoiceCounter(Base):
    """The last invoice number given to each owner: numbers run 1, 2, 3... per owner."""

    __tablename__ = "invoice_counters"

    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class Client(Base):
    """Someone an owner bills. An imported client carries its platform's name for where it
    came from (`source`) and its id there (`external_id`): one row per (owner, source,
    external id), whatever number of times it is imported."""

    __tablename__ = "clients"
    __table_args__ = (
        Index(None, "owner_id", "name"),
        UniqueConstraint("owner_id", "source", "external_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    source: Mapped[str | None] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Invoice(Base):
    """One invoice an owner sent to one of their clients.

    `client_name` is a copy of the client's name so one index can filter and sort the
    owner's invoices by it. The listing indexes each begin with the owner and end with the
    columns of a sort key, so every filter and sort of the listing reads one index in order
    (see docs/listing.md for which index serves which query).
    """

    __tablename__ = "invoices"
    __table_args__ = (
        Index("ix_invoices_owner_due_client", "owner_id", "due_date", "client_name"),
        Index("ix_invoices_owner_client_due", "owner_id", "client_name", "due_date"),
        Index(
            "ix_invoices_owner_status_due_client", "owner_id", "status", "due_date", "client_name"
        ),
        Index(
            "ix_invoices_owner_status_client_due", "owner_id", "status", "client_name", "due_date"
        ),
        Index(
            "ix_invoices_owner_due_status_client", "owner_id", "due_date", "status", "client_name"
        ),
        # The past-due sweep looks across all owners for pending invoices by due date.
        Index("ix_invoices_status_due", "status", "due_date"),
        UniqueConstraint("owner_id", "number", name="uq_invoices_owner_number"),
        # An imported invoice is one row per (owner, source, platform id): docs/sync.md.
        UniqueConstraint("owner_id", "source", "external_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True, default=uuid7)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    # "INV-000012": the owner's running number, given at creation, unique per owner.
    number: Mapped[str] = mapped_column(String(32))
    client_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(500))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=InvoiceStatus.PENDING)
    due_date: Mapped[date] = mapped_column(Date)
    # Goes up with every change of what the PDF shows (status, client name): a PDF is
    # rendered once per version and stored under it (docs/pdfs.md).
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Why the billing run gave up on it (the provider's code), while it is FAILED.
    failure_reason: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # Imported invoices only (NULL on invoices made here): where from, the platform's id and
    # number, the status the platform last reported, and when the platform stopped listing it.
    source: Mapped[str | None] = mapped_column(String(32))
    external_id: Mapped[str | None] = mapped_column(String(64))
    external_number: Mapped[str | None] = mapped_column(String(64))
    external_status: Mapped[str | None] = mapped_column(String(16))
    issued_at: Mapped[datetime | None] = mapped_column(DateTime)
    removed_upstream_at: Mapped[datetime | None] = mapped_column(DateTime)


class InvoiceLine(Base):
    """One line of an invoice; an invoice created without lines has none and shows its
    description as its single line."""

    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position", name="uq_invoice_lines_position"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    invoice_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, ForeignKey("invoices.id"))
    position: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))


class InvoiceSend(Base):
    """A request to email an invoice: what was asked for, and the fee taken for it. The
    email service reports what became of it (`/api/emails/{id}`)."""

    __tablename__ = "invoice_sends"
    __table_args__ = (Index(None, "owner_id", "invoice_id"),)

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True, default=uuid7)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    invoice_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, ForeignKey("invoices.id"))
    recipient_email: Mapped[str] = mapped_column(String(320))
    message: Mapped[str | None] = mapped_column(Text)
    pdf_key: Mapped[str] = mapped_column(String(300))
    fee_reference: Mapped[str] = mapped_column(String(100), unique=True)
    fee_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    fee_currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class OutboxMessage(OutboxMessageMixin, Base):
    """Events waiting to be published to invoice.events."""


class InboxMessage(InboxMessageMixin, Base):
    """Events this service's consumers have handled."""


class IdempotencyKey(IdempotencyKeyMixin, Base):
    """The first answers to POSTs sent with an Idempotency-Key, kept 24 hours."""
