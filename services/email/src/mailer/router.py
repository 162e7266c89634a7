"""HTTP endpoints: parse, call one service function, shape the reply.

`/api/...` is the owner's (bearer token), behind the gateway. `/webhooks/...` is the
providers': no token, each request verified by its own signature instead.
"""

import hashlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from common.auth import CurrentUser
from common.db import ReadSessionDep, SessionDep
from common.pagination import CursorCodecDep
from mailer import service, webhooks
from mailer.exceptions import MessageNotFound
from mailer.schemas import EmailListQuery, EmailPage, EmailRead, PageQuery, WebhookAccepted

PROBLEM = "application/problem+json"


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {}}}


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _problem("No such email for this user")}
REFUSED: dict[int | str, dict[str, Any]] = {
    401: _problem(
        "The signature, timestamp or origin does not hold up, or the webhook was received "
        "before (a replay); nothing was changed"
    )
}


def _raw_body(description: str) -> dict[str, Any]:
    """The webhook's body as OpenAPI shows it: read raw, since the signature covers bytes."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {}}},
        }
    }


emails_router = APIRouter(prefix="/api", tags=["emails"])
webhooks_router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@emails_router.get("/emails", response_model=EmailPage, summary="The user's sent emails")
async def list_emails(
    query: Annotated[EmailListQuery, Query()],
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> EmailPage:
    """Newest first, each with its status history, optionally only those in the given
    statuses; page with `next_cursor` (a cursor works only with the filter it came from)."""
    page = await service.list_messages(
        session, codec, user.id, query.limit, query.cursor, statuses=query.status
    )
    return EmailPage(items=[EmailRead.of(v) for v in page.items], next_cursor=page.next_cursor)


@emails_router.get("/emails/{email_id}", response_model=EmailRead, responses=NOT_FOUND)
async def get_email(email_id: uuid.UUID, user: CurrentUser, session: ReadSessionDep) -> EmailRead:
    """One email (its id is the send id the invoice service answered with)."""
    view = await service.get_owned(session, user.id, email_id)
    if view is None:
        raise MessageNotFound()
    return EmailRead.of(view)


@emails_router.get(
    "/invoices/{invoice_id}/emails",
    response_model=EmailPage,
    summary="The emails sent about one invoice",
)
async def list_invoice_emails(
    invoice_id: uuid.UUID,
    query: Annotated[PageQuery, Query()],
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> EmailPage:
    """Newest first; an invoice of another user (or none) has no emails here."""
    page = await service.list_messages(
        session, codec, user.id, query.limit, query.cursor, invoice_id=invoice_id
    )
    return EmailPage(items=[EmailRead.of(v) for v in page.items], next_cursor=page.next_cursor)


def _digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


@webhooks_router.post(
    "/sendgrid",
    response_model=WebhookAccepted,
    responses=REFUSED,
    summary="SendGrid's signed event webhook",
    openapi_extra=_raw_body("A JSON list of SendGrid events, signed (ECDSA P-256)"),
)
async def sendgrid_webhook(
    request: Request,
    session: SessionDep,
    signature: Annotated[str | None, Header(alias=webhooks.SENDGRID_SIGNATURE)] = None,
    timestamp: Annotated[str | None, Header(alias=webhooks.SENDGRID_TIMESTAMP)] = None,
) -> WebhookAccepted:
    body = await request.body()
    reports = webhooks.verify_sendgrid(request.app.state.settings, body, signature, timestamp)
    delivery = _digest((signature or "").encode())
    applied, ignored = await service.apply_webhook(session, "sendgrid", delivery, reports)
    return WebhookAccepted(applied=applied, ignored=ignored)


@webhooks_router.post(
    "/mailgun",
    response_model=WebhookAccepted,
    responses=REFUSED,
    summary="Mailgun's signed webhook",
    openapi_extra=_raw_body("Mailgun's JSON webhook: `signature` and `event-data`"),
)
async def mailgun_webhook(request: Request, session: SessionDep) -> WebhookAccepted:
    body = await request.body()
    token, reports = webhooks.verify_mailgun(request.app.state.settings, body)
    applied, ignored = await service.apply_webhook(session, "mailgun", token, reports)
    return WebhookAccepted(applied=applied, ignored=ignored)


@webhooks_router.post(
    "/ses",
    response_model=WebhookAccepted,
    responses=REFUSED,
    summary="Amazon SES events through an SNS subscription",
    openapi_extra=_raw_body("An SNS message (Notification or SubscriptionConfirmation)"),
)
async def ses_webhook(request: Request, session: SessionDep) -> WebhookAccepted:
    body = await request.body()
    verifier: webhooks.SnsVerifier = request.app.state.sns_verifier
    message = await verifier.verify(body)
    if message["Type"] == "SubscriptionConfirmation":
        await verifier.confirm(message)
        return WebhookAccepted(applied=0, ignored=0)
    reports = webhooks.ses_reports(message)
    applied, ignored = await service.apply_webhook(
        session, "ses", str(message["MessageId"]), reports
    )
    return WebhookAccepted(applied=applied, ignored=ignored)
