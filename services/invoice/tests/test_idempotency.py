"""Idempotency keys through the invoice API: an invoice created again with its key is the
same invoice, stored and announced once."""

import uuid

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from invoice.models import Invoice, OutboxMessage

from .factories import create_client


async def test_a_replayed_invoice_creation_creates_one_invoice_and_one_event(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    client = await create_client(api, auth)
    body = {"client_id": client["id"], "description": "Design work", "amount": "500.00"}
    headers = {**auth, "Idempotency-Key": f"invoice-{uuid.uuid4()}"}

    first = await api.post("/api/invoices", json=body, headers=headers)
    again = await api.post("/api/invoices", json=body, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    async with sessionmaker() as session:
        invoices = await session.scalar(
            select(func.count()).select_from(Invoice).where(Invoice.owner_id == owner)
        )
        events = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.message_key == str(owner),
                OutboxMessage.payload.contains('"invoice.created"'),
            )
        )
    assert invoices == 1
    assert events == 1
