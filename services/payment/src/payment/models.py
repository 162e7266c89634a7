"""Tables of the payment_svc schema."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    VARBINARY,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BinaryUUID, service_metadata
from common.idempotency import IdempotencyKeyMixin
from common.ids import uuid7
from common.inbox import InboxMessageMixin
from common.outbox import OutboxMessageMixin, utcnow


class Base(DeclarativeBase):
    """The payment_svc schema's registry."""

    metadata = service_metadata()


class PaymentKind(StrEnum):
    INVOICE = "invoice"  # a client pays an owner's invoice by card
    TOPUP = "topup"  # the owner adds funds to their wallet by card
    AUTOPAY = "autopay"  # the monthly billing run charges a client's saved payment method


class PaymentStatus(StrEnum):
    """Where a card charge stands.

    processing: written and committed before the provider is called; a request is (or was)
        waiting for the provider's answer.
    unknown: the request gave up without learning the answer (timeout, 5xx): the provider may
        or may not have charged. Asked again before anything else happens to the invoice.
    succeeded / failed: final. A failed payment charged nothing and no longer holds its
        invoice.
    """

    PROCESSING = "processing"
    UNKNOWN = "unknown"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


UNSETTLED_STATUSES = (PaymentStatus.PROCESSING, PaymentStatus.UNKNOWN)


class Payment(Base):
    """One card charge through the provider, as an attempt and then as its outcome.

    `active_invoice_id` is the invoice id while the charge may take or has taken the money,
    and NULL once it failed: its unique index lets one payment at a time hold an invoice, so
    a second concurrent attempt fails on insert instead of charging the card again.

    `active_topup_key` does the same for a top-up sent with an Idempotency-Key: the key, while
    the top-up may take or has taken the money, unique per owner. The key's stored answer
    is written after the top-up commits, so a crash in between lets the request run again
    (docs/idempotency.md); it then finds this row instead of charging the card a second time.

    The card is kept masked (first six and last four digits), with its expiry and name;
    the full number and the CVV are never stored.
    """

    __tablename__ = "payments"
    __table_args__ = (
        Index(None, "owner_id", "id"),
        Index(None, "status", "created_at"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('processing', 'unknown', 'succeeded', 'failed')", name="status_known"
        ),
        CheckConstraint("kind IN ('invoice', 'topup', 'autopay')", name="kind_known"),
        CheckConstraint(
            "status <> 'failed' OR active_invoice_id IS NULL", name="failed_releases_invoice"
        ),
        UniqueConstraint("owner_id", "active_topup_key"),
        CheckConstraint(
            "status <> 'failed' OR active_topup_key IS NULL", name="failed_releases_topup_key"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True, default=uuid7)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    kind: Mapped[str] = mapped_column(String(16))
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(BinaryUUID)
    active_invoice_id: Mapped[uuid.UUID | None] = mapped_column(BinaryUUID, unique=True)
    # Bytes, like the idempotency_keys table's: keys are case-sensitive.
    active_topup_key: Mapped[bytes | None] = mapped_column(VARBINARY(255))
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.PROCESSING)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str] = mapped_column(String(500))
    provider: Mapped[str] = mapped_column(String(32))
    # The id the provider knows the charge by: the invoice id (seed 001) or the payment id.
    transaction_id: Mapped[str] = mapped_column(String(64))
    provider_charge_id: Mapped[str | None] = mapped_column(String(64))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    card_number_masked: Mapped[str] = mapped_column(String(32))
    card_last4: Mapped[str] = mapped_column(String(4))
    card_expiry: Mapped[str] = mapped_column(String(7))
    card_name: Mapped[str] = mapped_column(String(100))
    # An autopay attempt: the saved method and the provider's token for it, so a resumed run
    # sends the very same request (same idempotency key) even if the method was removed since.
    payment_method_id: Mapped[uuid.UUID | None] = mapped_column(BinaryUUID)
    provider_token: Mapped[str | None] = mapped_column(String(64))
    # Who is told of the payment, and the invoice's number, for the receipt that
    # `payment.succeeded` asks the email service for; NULL for top-ups and where not known.
    client_email: Mapped[str | None] = mapped_column(String(320))
    client_name: Mapped[str | None] = mapped_column(String(200))
    invoice_number: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class PaymentMethod(Base):
    """A client's card saved at the provider with the owner's auto-pay consent.

    The card went to the provider once; only its token, the masked number, the expiry and
    the name are kept here. The billing run charges the newest method of a client.
    """

    __tablename__ = "payment_methods"
    __table_args__ = (
        Index(None, "owner_id", "client_id", "id"),
        Index(None, "owner_id", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True, default=uuid7)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    client_id: Mapped[int] = mapped_column(BigInteger)
    provider: Mapped[str] = mapped_column(String(32))
    provider_token: Mapped[str] = mapped_column(String(64))
    card_number_masked: Mapped[str] = mapped_column(String(32))
    card_last4: Mapped[str] = mapped_column(String(4))
    card_expiry: Mapped[str] = mapped_column(String(7))
    card_name: Mapped[str] = mapped_column(String(100))
    autopay_consent_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class InvoiceCopy(Base):
    """The invoice service's invoices as `invoice.events` tell them: what the run charges.

    Only the fields the run needs; the invoice schema itself is never read.
    """

    __tablename__ = "invoices"
    __table_args__ = (Index(None, "status", "due_date"),)

    invoice_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    client_id: Mapped[int] = mapped_column(BigInteger)
    client_email: Mapped[str | None] = mapped_column(String(320))
    client_name: Mapped[str | None] = mapped_column(String(200))
    number: Mapped[str | None] = mapped_column(String(32))  # "INV-000012"
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16))
    due_date: Mapped[date] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class RunStatus(StrEnum):
    CHARGING = "charging"  # invoices are waiting for their first or a network retry
    WAITING_RETRIES = "waiting_retries"  # only declined invoices' later retries remain
    FINISHED = "finished"  # every invoice has its final outcome


class ItemState(StrEnum):
    QUEUED = "queued"  # to be charged at next_attempt_at
    DONE = "done"  # its outcome is final for this run


class ItemOutcome(StrEnum):
    PAID = "paid"
    ALREADY_PAID = "already_paid"  # another payment holds the invoice as paid
    RETRY_SCHEDULED = "retry_scheduled"  # declined; tried again at next_attempt_at
    PROVIDER_UNAVAILABLE = "provider_unavailable"  # network/5xx; tried again later
    FAILED = "failed"  # final: a person acts (reason in failure_code)
    NO_PAYMENT_METHOD = "no_payment_method"  # the client has no saved method: reported
    SKIPPED = "skipped"  # the invoice was paid, voided or failed by other means meanwhile


class BillingRun(Base):
    """One run of a schedule, for the fire time it is due for; unique per schedule and time,
    so however many workers see it due, one run exists."""

    __tablename__ = "billing_runs"
    __table_args__ = (UniqueConstraint("schedule", "scheduled_for"), Index(None, "status"))

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True, default=uuid7)
    schedule: Mapped[str] = mapped_column(String(40))
    scheduled_for: Mapped[datetime] = mapped_column(DateTime)
    # Invoices due on or before this date are charged.
    as_of: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default=RunStatus.CHARGING)
    started_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class BillingRunItem(Base):
    """One invoice of a run and its outcome: unique per run and invoice, so each invoice has
    exactly one outcome per run. `payment_id` is its current attempt (a Payment of kind
    autopay), whose `active_invoice_id` keeps a second attempt from starting meanwhile."""

    __tablename__ = "billing_run_items"
    __table_args__ = (
        UniqueConstraint("run_id", "invoice_id"),
        Index(None, "state", "next_attempt_at"),
        Index(None, "run_id", "id"),
        Index(None, "owner_id", "run_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_runs.id"))
    invoice_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    client_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(10), default=ItemState.QUEUED)
    outcome: Mapped[str | None] = mapped_column(String(24))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(default=0)
    first_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(BinaryUUID)
    # The worker working on the item and until when; an expired claim is anyone's again.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SchedulerLock(Base):
    """ShedLock's table: a named lease held until `lock_until` by `locked_by`."""

    __tablename__ = "scheduler_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    lock_until: Mapped[datetime] = mapped_column(DATETIME(fsp=6))
    locked_at: Mapped[datetime] = mapped_column(DATETIME(fsp=6))
    locked_by: Mapped[str] = mapped_column(String(100))


class EntryType(StrEnum):
    TOPUP = "topup"  # funds added by card
    FEE = "fee"  # a platform fee taken (sending an invoice by email)
    REFUND = "refund"  # a fee given back


class WalletAccount(Base):
    """An owner's balance in one currency and the number of its last ledger entry.

    Every change locks this row first (SELECT ... FOR UPDATE), so changes to one account
    happen one after another; the CHECK is the last guard against a negative balance.
    """

    __tablename__ = "wallet_accounts"
    __table_args__ = (
        UniqueConstraint("owner_id", "currency"),
        CheckConstraint("balance >= 0", name="balance_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0.00"))
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class WalletEntry(Base):
    """One change of a wallet account; rows are only ever added.

    `amount` is signed (a fee is negative); `sequence` numbers the account's entries from 1
    without gaps. A reference identifies the change for its type and owner, so the same top-up,
    fee or refund arriving twice is applied once: a top-up's reference is its payment id, a
    fee's comes from the caller, and a refund carries the reference of the fee it gives back.
    The listing's order is the id's: an account's entries are inserted under its lock, so
    their ids grow with their sequence.
    """

    __tablename__ = "wallet_entries"
    __table_args__ = (
        UniqueConstraint("account_id", "sequence"),
        UniqueConstraint("owner_id", "type", "reference"),
        Index(None, "owner_id", "id"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("type IN ('topup', 'fee', 'refund')", name="type_known"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("wallet_accounts.id"))
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID)
    currency: Mapped[str] = mapped_column(String(3))
    sequence: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    balance_after: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    reference: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(200))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(BinaryUUID)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ClosedAccount(Base):
    """A deleted user, from `user.deleted`: their tokens are refused until they expire.

    Payments and wallet entries stay, as bookkeeping records nobody can reach any more.
    """

    __tablename__ = "closed_accounts"

    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True)
    # When the user service deleted the account (the event's time), naive UTC.
    deleted_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class OutboxMessage(OutboxMessageMixin, Base):
    """Events waiting to be published to payment.events."""


class InboxMessage(InboxMessageMixin, Base):
    """Events this service's consumers have handled."""


class IdempotencyKey(IdempotencyKeyMixin, Base):
    """The first answers to POSTs sent with an Idempotency-Key, kept 24 hours."""
