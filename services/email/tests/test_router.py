"""The owner's view of their emails: listing, one email with its history, an invoice's
emails; another user's emails are invisible."""

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.outbox import utcnow
from common.testing.identity import TestIssuer
from common.testing.s3 import S3Server
from mailer.dispatcher import Dispatcher
from mailer.models import Message, MessageStatus
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


async def _emails_in_statuses(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    owner: uuid.UUID,
    statuses: list[MessageStatus],
) -> list[tuple[str, str]]:
    """One queued email per status, then moved to it as the dispatcher and the providers'
    webhooks would have; (id, status) newest first."""
    pdf = put_pdf(aws, f"{owner}/status.pdf")
    made = []
    for status in statuses:
        send_id = uuid.uuid4()
        await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id))
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(Message).where(Message.id == send_id).values(status=status)
            )
        made.append(str(send_id))
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Message.id, Message.status)
            .where(Message.id.in_([uuid.UUID(m) for m in made]))
            .order_by(Message.created_at.desc(), Message.id.desc())
        )
        return [(str(row.id), row.status) for row in rows]


async def _all_pages(
    api: httpx.AsyncClient, auth: dict[str, str], params: dict[str, Any]
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await api.get(
            "/api/emails", headers=auth, params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


async def test_the_listing_filters_by_status_across_pages(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    api: httpx.AsyncClient,
    auth: dict[str, str],
    test_issuer: TestIssuer,
    owner: uuid.UUID,
) -> None:
    B, F, D, Q = (
        MessageStatus.BOUNCED,
        MessageStatus.FAILED,
        MessageStatus.DELIVERED,
        MessageStatus.QUEUED,
    )
    newest_first = await _emails_in_statuses(sessionmaker, aws, owner, [B, D, B, F, Q, B])
    stranger = uuid.uuid4()
    await _emails_in_statuses(sessionmaker, aws, stranger, [B])

    def expected(*statuses: str) -> list[str]:
        return [send_id for send_id, status in newest_first if status in statuses]

    bounces = await _all_pages(api, auth, {"status": "bounced", "limit": 2})
    assert [item["id"] for item in bounces] == expected("bounced")
    assert len(bounces) == 3
    assert {item["status"] for item in bounces} == {"bounced"}
    either = await _all_pages(api, auth, {"status": ["bounced", "failed"], "limit": 3})
    assert [item["id"] for item in either] == expected("bounced", "failed")
    assert len(either) == 4
    unfiltered = await _all_pages(api, auth, {"limit": 100})
    assert len(unfiltered) == 6
    # The other owner's bounce is theirs alone.
    theirs = await _all_pages(api, test_issuer.headers(stranger), {"status": "bounced"})
    assert len(theirs) == 1
    assert theirs[0]["id"] not in {send_id for send_id, _ in newest_first}


async def test_a_cursor_works_only_with_the_status_filter_it_came_from(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
) -> None:
    bounced = MessageStatus.BOUNCED
    await _emails_in_statuses(sessionmaker, aws, owner, [bounced, bounced, bounced])
    first = await api.get("/api/emails", headers=auth, params={"status": "bounced", "limit": 1})
    cursor = first.json()["next_cursor"]
    assert cursor is not None
    # The same statuses in another order are the same filter.
    same = await api.get(
        "/api/emails",
        headers=auth,
        params={"status": ["bounced", "failed"], "limit": 1},
    )
    same_cursor = same.json()["next_cursor"]
    reordered = await api.get(
        "/api/emails",
        headers=auth,
        params={"status": ["failed", "bounced"], "limit": 1, "cursor": same_cursor},
    )
    assert reordered.status_code == 200, reordered.text

    for params in (
        {"status": "failed", "cursor": cursor},
        {"cursor": cursor},
        {"status": ["bounced", "failed"], "cursor": cursor},
    ):
        refused = await api.get("/api/emails", headers=auth, params=params)
        assert refused.status_code == 422, params
        assert refused.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in refused.json()["errors"]] == ["cursor"]


async def test_an_unknown_status_is_a_problem_naming_the_parameter(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for params in ({"status": "lost"}, {"status": ["bounced", "BOUNCED"]}, {"status": ""}):
        response = await api.get("/api/emails", headers=auth, params=params)

        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert "status" in body["detail"]
        assert all(e["field"].startswith("status") for e in body["errors"])


async def test_the_status_filter_reads_its_index_in_order(
    sessionmaker: async_sessionmaker[AsyncSession],
    app: FastAPI,
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
) -> None:
    """A few bounces among many delivered emails, as an owner's mailbox looks: the page is
    read from (owner_id, status, created_at, id), in order, not by sorting the owner's
    emails."""
    start = utcnow()
    async with sessionmaker() as session, session.begin():
        for n in range(400):
            moment = start - timedelta(minutes=n)
            session.add(
                Message(
                    id=uuid.uuid4(),
                    owner_id=owner,
                    kind="invoice",
                    recipient_email="client@example.com",
                    recipient_name="Client",
                    sender_name="Owner",
                    subject=f"Invoice {n}",
                    text_body="",
                    html_body="",
                    status=MessageStatus.BOUNCED if n % 20 == 0 else MessageStatus.DELIVERED,
                    next_attempt_at=moment,
                    requested_at=moment,
                    created_at=moment,
                    updated_at=moment,
                )
            )
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM messages" in statement:
            statements.append((statement, parameters))

    engine: AsyncEngine = app.state.read_engine
    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        first = await api.get("/api/emails", headers=auth, params={"status": "bounced", "limit": 5})
        assert [item["status"] for item in first.json()["items"]] == ["bounced"] * 5
        await api.get(
            "/api/emails",
            headers=auth,
            params={"status": "bounced", "limit": 5, "cursor": first.json()["next_cursor"]},
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)

    assert len(statements) == 2
    async with engine.connect() as connection:
        for statement, parameters in statements:
            result = await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            plan = [dict(row._mapping) for row in result]
            messages = [row for row in plan if row["table"] == "messages"]
            assert len(messages) == 1, plan
            assert messages[0]["key"] == "ix_messages_owner_id_status_created_at_id", plan
            assert "filesort" not in (messages[0]["Extra"] or ""), plan
