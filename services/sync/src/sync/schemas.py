"""API models of the sync service."""

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from common.types import UtcDateTime
from sync.models import Connection


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
    def of(cls, connection: Connection) -> "SyncStatus":
        return cls(
            connection_id=connection.id,
            state=connection.state,
            phase=connection.phase,
            pages_read=connection.pages_read,
            invoices_seen=connection.invoices_seen,
            invoices_changed=connection.invoices_changed,
            invoices_skipped=connection.invoices_skipped,
            sync_started_at=connection.scan_started_at,
            last_success_at=connection.last_success_at,
            last_error=connection.last_error,
            last_error_at=connection.last_error_at,
            next_attempt_at=connection.next_attempt_at,
        )
