"""The owner's view of their emails: listing, one email with its history, an invoice's
emails; another user's emails are invisible."""

import uuid
from collections.abc import Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.identity import TestIssuer
from common.testing.s3 import S3Server
from mailer.dispatcher import Dispatcher
from simulators.mail_testing import MailProvidersServer

from .factories import handle, put_pdf, send_requested
from .test_dispatcher import drain

DispatcherFactory = Callable[..., Dispatcher]


async def test_the_owner_sees_the_email_with_its_history(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
) -> None:
    simulators.fault("sendgrid", "error", times=1)
    send_id, invoice_id = uuid.uuid4(), uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/INV-0001.pdf")
    await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id, invoice_id=invoice_id))
    await drain(make_dispatcher())

    response = await api.get(f"/api/emails/{send_id}", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "sent"
    assert body["provider"] == "mailgun"
    assert body["invoice_id"] == str(invoice_id)
    assert body["attachment_filename"] == "INV-0001.pdf"
    assert [(h["status"], h["provider"]) for h in body["history"]] == [
        ("queued", None),
        ("sending", None),
        ("sent", "mailgun"),
    ]

    listing = (await api.get("/api/emails", headers=auth)).json()
    assert [item["id"] for item in listing["items"]] == [str(send_id)]
    of_invoice = (await api.get(f"/api/invoices/{invoice_id}/emails", headers=auth)).json()
    assert [item["id"] for item in of_invoice["items"]] == [str(send_id)]
    other_invoice = await api.get(f"/api/invoices/{uuid.uuid4()}/emails", headers=auth)
    assert other_invoice.json()["items"] == []


async def test_another_users_email_is_not_found(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    owner: uuid.UUID,
) -> None:
    send_id, invoice_id = uuid.uuid4(), uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/INV-0001.pdf")
    await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id, invoice_id=invoice_id))
    stranger = test_issuer.headers(uuid.uuid4())

    missing = await api.get(f"/api/emails/{send_id}", headers=stranger)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await api.get("/api/emails", headers=stranger)).json()["items"] == []
    of_invoice = await api.get(f"/api/invoices/{invoice_id}/emails", headers=stranger)
    assert of_invoice.json()["items"] == []


async def test_pages_follow_the_cursor_newest_first(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
) -> None:
    pdf = put_pdf(aws, f"{owner}/page.pdf")
    sent = []
    for _ in range(5):
        send_id = uuid.uuid4()
        await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id))
        sent.append(str(send_id))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/emails", headers=auth, params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(sent)
    assert len(seen) == len(set(seen))


async def test_bad_input_is_a_problem_naming_the_field(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    bad_cursor = await api.get("/api/emails", headers=auth, params={"cursor": "forged.x"})
    assert bad_cursor.status_code == 422
    assert "cursor" in bad_cursor.text
    bad_limit = await api.get("/api/emails", headers=auth, params={"limit": 0})
    assert bad_limit.status_code == 422
    assert "limit" in bad_limit.text
    bad_id = await api.get("/api/emails/not-a-uuid", headers=auth)
    assert bad_id.status_code == 422
    no_token = await api.get("/api/emails")
    assert no_token.status_code == 401
