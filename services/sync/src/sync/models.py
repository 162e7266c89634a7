"""Tables of the sync_svc schema."""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BinaryUUID, service_metadata
from common.ids import uuid7
from common.inbox import InboxMessageMixin
from common.outbox import OutboxMessageMixin, utcnow


class Base(DeclarativeBase):
    """The sync_svc schema's registry."""

    metadata = service_metadata()


class JobState(StrEnum):
    IDLE = "idle"  # no sync under way; the last one finished (or none ran yet)
    QUEUED = "queued"  # a job message is on its way to a worker
    RUNNING = "running"  # a worker holds the lease and reads pages
    PARKED = "parked"  # the platform kept failing; retried at next_attempt_at
    FAILED = "failed"  # the platform refused the API key: waits for the next dispatch


class Phase(StrEnum):
    CLIENTS = "clients"
    INVOICES = "invoices"
    REMOVALS = "removals"  # marking what the finished read did not see


class Connection(Base):
    """An owner's billing platform account, and where its sync stands.

    The sync's checkpoint (phase, cursor, scan number) is here, written in the same
    transaction as the page's events: a job resumes exactly after the last page it kept.
    """

    __tablename__ = "connections"

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True, default=uuid7)
    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, unique=True)
    base_url: Mapped[str] = mapped_column(String(500))
    # AES-256-GCM: nonce + ciphertext + tag, and the id of the key that sealed it.
    api_key_sealed: Mapped[bytes] = mapped_column(LargeBinary(1024))
    api_key_key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    state: Mapped[str] = mapped_column(String(16), default=JobState.IDLE)
    # The one job message that may work on this connection; any other is stale.
    job_token: Mapped[str | None] = mapped_column(String(36))
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)

    scan_number: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str] = mapped_column(String(16), default=Phase.CLIENTS)
    cursor: Mapped[str | None] = mapped_column(String(200))
    pages_read: Mapped[int] = mapped_column(Integer, default=0)
    invoices_seen: Mapped[int] = mapped_column(Integer, default=0)
    invoices_changed: Mapped[int] = mapped_column(Integer, default=0)
    invoices_skipped: Mapped[int] = mapped_column(Integer, default=0)
    scan_started_at: Mapped[datetime | None] = mapped_column(DateTime)

    last_success_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    manual_run_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (Index(None, "state", "next_attempt_at"),)


class SyncedRecord(Base):
    """What the last read saw of one platform record, to send only what changed.

    `payload` is the record as last sent to the invoice service (normalised JSON); a page read
    again with the same content sends nothing. `seen_scan` is the last full read that saw it:
    an invoice a finished read did not see was removed from the platform.
    """

    __tablename__ = "synced_records"

    connection_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(1), primary_key=True)  # "c"lient or "i"nvoice
    external_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    payload: Mapped[str] = mapped_column(Text)
    seen_scan: Mapped[int] = mapped_column(Integer)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index(None, "connection_id", "kind", "seen_scan"),)


class OutboxMessage(OutboxMessageMixin, Base):
    """Events and job commands waiting to be published (sync.events, sync.jobs)."""


class InboxMessage(InboxMessageMixin, Base):
    """Events this service's consumers have handled."""
