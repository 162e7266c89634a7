"""API models of the sync service."""

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from common.types import UtcDateTime


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectionCreate(Strict):
    base_url: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=8, max_length=500),
        Field(
            description="The billing platform's API address",
            examples=["https://api.billing.example"],
        ),
    ]
    # SecretStr: never echoed in an error, a log line or a repr.
    api_key: Annotated[
        SecretStr,
        Field(min_length=8, max_length=200, description="The owner's API key on that platform"),
    ]


class ConnectionRead(BaseModel):
    """A connection as the owner sees it: never the API key, not even part of it."""

    id: uuid.UUID
    base_url: str
    created_at: UtcDateTime


class ConnectionList(BaseModel):
    items: list[ConnectionRead]


class SyncStatus(BaseModel):
    connection_id: uuid.UUID
    state: str = Field(
        description="idle, queued, running, parked (retried at next_attempt_at) or failed"
    )
    phase: str = Field(description="What the current sync reads: clients, invoices or removals")
    pages_read: int
    invoices_seen: int
    invoices_changed: int
    invoices_skipped: int
    sync_started_at: UtcDateTime | None
    last_success_at: UtcDateTime | None
    last_error: str | None
    last_error_at: UtcDateTime | None
    next_attempt_at: UtcDateTime | None

    @classmethod
    def of(cls, connection: object) -> "SyncStatus":
        c = connection
        return cls(
            connection_id=c.id,  # type: ignore[attr-defined]
            state=c.state,  # type: ignore[attr-defined]
            phase=c.phase,  # type: ignore[attr-defined]
            pages_read=c.pages_read,  # type: ignore[attr-defined]
            invoices_seen=c.invoices_seen,  # type: ignore[attr-defined]
            invoices_changed=c.invoices_changed,  # type: ignore[attr-defined]
            invoices_skipped=c.invoices_skipped,  # type: ignore[attr-defined]
            sync_started_at=c.scan_started_at,  # type: ignore[attr-defined]
            last_success_at=c.last_success_at,  # type: ignore[attr-defined]
            last_error=c.last_error,  # type: ignore[attr-defined]
            last_error_at=c.last_error_at,  # type: ignore[attr-defined]
            next_attempt_at=c.next_attempt_at,  # type: ignore[attr-defined]
        )


_ = datetime
