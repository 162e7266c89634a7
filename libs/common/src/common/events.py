"""The CloudEvents 1.0 envelope every event travels in (structured mode, JSON).

Each producer owns its event payloads in its own `events.py`; this module shares only the
envelope. The subject is the owner's user id and is also the Kafka message key, so one
tenant's events stay in order on one partition.
"""

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.ids import uuid7

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope; consumers validate `data` with their own slim model."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid7()))
    source: str
    type: str
    subject: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]
    # The CloudEvents distributed-tracing extension: the W3C trace context of the work that
    # wrote the event (common.tracing), absent from the JSON when there is none. Last, so the
    # relay finds it at the end of a stored envelope.
    traceparent: str | None = Field(None, exclude_if=lambda value: value is None)
    tracestate: str | None = Field(None, exclude_if=lambda value: value is None)


def new_event(source: str, event_type: str, owner_id: uuid.UUID, data: BaseModel) -> CloudEvent:
    """An envelope for one event about one owner's data."""
    return CloudEvent(
        source=source,
        type=event_type,
        subject=str(owner_id),
        data=data.model_dump(mode="json"),
    )
