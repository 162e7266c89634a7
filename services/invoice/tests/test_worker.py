"""The worker's past-due schedule: pending invoices whose due date has passed move to
past due, each with its status-change event staged in the same transaction."""

from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from invoice.models import OutboxMessage
from invoice.service import today_utc
from invoice.worker import sweep_past_due

from .factories import create_client, create_invoice


async def test_overdue_pending_invoices_become_past_due_and_say_so(
    api: httpx.AsyncClient, auth: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    client = await create_client(api, auth)
    yesterday = (today_utc() - timedelta(days=1)).isoformat()
    overdue = await create_invoice(api, auth, client["id"], due_date=yesterday)
    due_today = await create_invoice(api, auth, client["id"], due_date=today_utc().isoformat())
    voided = await create_invoice(api, auth, client["id"], due_date=yesterday)
    await api.post(f"/api/invoices/{voided['id']}/void", headers=auth)

    moved = await sweep_past_due(sessionmaker)
    again = await sweep_past_due(sessionmaker)

    assert moved >= 1
    assert again == 0
    statuses = {
        invoice["id"]: (await api.get(f"/api/invoices/{invoice['id']}", headers=auth)).json()[
            "status"
        ]
        for invoice in (overdue, due_today, voided)
    }
    assert statuses == {overdue["id"]: "past_due", due_today["id"]: "pending", voided["id"]: "void"}
    changes = await _status_changes(sessionmaker, overdue["id"])
    assert [(c["previous_status"], c["status"]) for c in changes] == [("pending", "past_due")]


async def _status_changes(
    sessionmaker: async_sessionmaker[AsyncSession], invoice_id: str
) -> list[dict[str, object]]:
    async with sessionmaker() as session:
        payloads = await session.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.payload.contains(invoice_id))
            .order_by(OutboxMessage.id)
        )
        events = [CloudEvent.model_validate_json(p) for p in payloads]
    return [e.data for e in events if e.type == "invoice.status_changed"]
