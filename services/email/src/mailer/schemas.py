"""API models of the email service."""

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from common.types import UtcDateTime
from mailer.models import MessageStatus
from mailer.service import MessageView

ListLimit = Annotated[int, Field(ge=1, le=100)]


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: ListLimit = 10
    cursor: str | None = Field(None, max_length=1024)


class EmailListQuery(PageQuery):
    status: list[MessageStatus] | None = Field(
        None,
        description="Only emails in one of these statuses; repeat the parameter for several "
        "(`?status=bounced&status=failed`)",
        max_length=len(MessageStatus),
    )


class StatusChangeRead(BaseModel):
    status: MessageStatus
    provider: str | None = Field(description="The provider involved, when one was")
    detail: str | None
    occurred_at: UtcDateTime


class EmailRead(BaseModel):
    id: uuid.UUID = Field(description="The send id the invoice service answered with")
    kind: str = Field(
        description="invoice; payment_failed for a declined automatic charge; receipt for a "
        "client's card payment of an invoice"
    )
    invoice_id: uuid.UUID | None
    recipient_email: str
    recipient_name: str
    subject: str
    status: MessageStatus
    provider: str | None = Field(description="The provider that carried it")
    failure_reason: str | None
    attachment_filename: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    history: list[StatusChangeRead] = Field(
        description="Every status it went through, oldest first"
    )

    @classmethod
    def of(cls, view: MessageView) -> "EmailRead":
        m = view.message
        return cls(
            id=m.id,
            kind=m.kind,
            invoice_id=m.invoice_id,
            recipient_email=m.recipient_email,
            recipient_name=m.recipient_name,
            subject=m.subject,
            status=MessageStatus(m.status),
            provider=m.provider,
            failure_reason=m.failure_reason,
            attachment_filename=m.attachment_filename,
            created_at=m.created_at,
            updated_at=m.updated_at,
            history=[
                StatusChangeRead(
                    status=MessageStatus(c.status),
                    provider=c.provider,
                    detail=c.detail,
                    occurred_at=c.occurred_at,
                )
                for c in view.history
            ],
        )


class EmailPage(BaseModel):
    items: list[EmailRead]
    next_cursor: str | None


class WebhookAccepted(BaseModel):
    applied: int = Field(description="Events that changed a message's status")
    ignored: int = Field(description="Events already applied, or about no message of ours")
