"""Invoices imported from a billing platform (`billing.invoices_imported` from the sync
service): one row per platform id, statuses as the platform reports them, removals marked,
read-only here except for paying."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from invoice import service
from invoice.consumers import on_invoices_imported
from invoice.models import Invoice, InvoiceStatus, OutboxMessage

SOURCE = "billing_platform"


def _event(
    owner: uuid.UUID, invoices: list[dict[str, object]], clients: list[dict[str, str]] | None = None
) -> CloudEvent:
    return CloudEvent(
        source="/services/sync",
        type="billing.invoices_imported",
        subject=str(owner),
        data={
            "owner_id": str(owner),
            "connection_id": str(uuid.uuid4()),
            "source": SOURCE,
            "clients": clients
            if clients is not None
            else [{"external_id": "cli_1", "name": "Acme", "email": "ap@acme.example"}],
            "invoices": invoices,
        },
    )


def _invoice(external_id: str, status: str = "pending", **changes: object) -> dict[str, object]:
    return {
        "external_id": external_id,
        "number": f"N-{external_id}",
        "client_external_id": "cli_1",
        "description": "Consulting",
        "amount": "120.00",
        "currency": "USD",
        "status": status,
        "due_date": (date.today() - timedelta(days=10)).isoformat(),
        "issued_at": datetime.now(UTC).isoformat(),
        "removed": False,
        **changes,
    }


async def _apply(sessionmaker: async_sessionmaker[AsyncSession], event: CloudEvent) -> None:
    async with sessionmaker() as session, session.begin():
        await on_invoices_imported(session, event)


async def _imported(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> dict[str, Invoice]:
    async with sessionmaker() as session:
        rows = (await session.scalars(select(Invoice).where(Invoice.owner_id == owner))).all()
    return {str(row.external_id): row for row in rows}


async def test_an_import_applied_twice_is_one_invoice(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    event = _event(owner, [_invoice("inv_1"), _invoice("inv_2")])
    await _apply(sessionmaker, event)
    await _apply(sessionmaker, _event(owner, [_invoice("inv_1"), _invoice("inv_2")]))

    imported = await _imported(sessionmaker, owner)
    assert sorted(imported) == ["inv_1", "inv_2"]
    assert imported["inv_1"].amount == Decimal("120.00")
    assert imported["inv_1"].external_number == "N-inv_1"
    assert imported["inv_1"].client_name == "Acme"


async def test_a_later_status_is_applied_and_announced(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    await _apply(sessionmaker, _event(owner, [_invoice("inv_1")]))
    await _apply(sessionmaker, _event(owner, [_invoice("inv_1", "paid")]))

    invoice = (await _imported(sessionmaker, owner))["inv_1"]
    assert invoice.status == InvoiceStatus.PAID
    async with sessionmaker() as session:
        payloads = (
            await session.scalars(
                select(OutboxMessage.payload).where(OutboxMessage.message_key == str(owner))
            )
        ).all()
    types = [CloudEvent.model_validate_json(p).type for p in payloads]
    assert types == ["invoice.created", "invoice.status_changed"]


async def test_an_invoice_paid_here_stays_paid_while_the_platform_lags(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    await _apply(sessionmaker, _event(owner, [_invoice("inv_1")]))
    invoice = (await _imported(sessionmaker, owner))["inv_1"]
    async with sessionmaker() as session, session.begin():
        await service.record_payment(session, owner, invoice.id, "pay_1")
    # The platform still says pending, and later past due: paid here stands.
    await _apply(sessionmaker, _event(owner, [_invoice("inv_1", "pending")]))
    await _apply(sessionmaker, _event(owner, [_invoice("inv_1", "past_due")]))

    assert (await _imported(sessionmaker, owner))["inv_1"].status == InvoiceStatus.PAID


async def test_a_removed_invoice_is_kept_marked_and_voided(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    await _apply(sessionmaker, _event(owner, [_invoice("inv_1"), _invoice("inv_2", "paid")]))
    await _apply(
        sessionmaker,
        _event(owner, [_invoice("inv_1", removed=True), _invoice("inv_2", "paid", removed=True)]),
    )

    imported = await _imported(sessionmaker, owner)
    assert imported["inv_1"].removed_upstream_at is not None
    assert imported["inv_1"].status == InvoiceStatus.VOID
    assert imported["inv_2"].removed_upstream_at is not None
    assert imported["inv_2"].status == InvoiceStatus.PAID  # money received stays received


async def test_imports_are_kept_apart_by_owner(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    other = uuid.uuid4()
    await _apply(sessionmaker, _event(owner, [_invoice("inv_same")]))
    await _apply(sessionmaker, _event(other, [_invoice("inv_same", "paid")]))

    assert (await _imported(sessionmaker, owner))["inv_same"].status == InvoiceStatus.PENDING
    assert (await _imported(sessionmaker, other))["inv_same"].status == InvoiceStatus.PAID


async def test_an_imported_invoice_cannot_be_voided_here(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    owner: uuid.UUID,
) -> None:
    await _apply(sessionmaker, _event(owner, [_invoice("inv_1")]))
    invoice = (await _imported(sessionmaker, owner))["inv_1"]

    response = await api.post(f"/api/invoices/{invoice.id}/void", headers=auth)
    shown = await api.get(f"/api/invoices/{invoice.id}", headers=auth)

    assert response.status_code == 409
    assert response.json()["code"] == "invoice_imported"
    assert shown.json()["source"] == SOURCE
    assert shown.json()["external_number"] == "N-inv_1"
    assert shown.json()["status"] == "pending"


async def test_the_past_due_sweep_leaves_imported_invoices_to_their_platform(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> None:
    await _apply(sessionmaker, _event(owner, [_invoice("inv_1")]))  # due 10 days ago
    async with sessionmaker() as session, session.begin():
        while await service.mark_past_due(session, date.today()):
            pass
    assert (await _imported(sessionmaker, owner))["inv_1"].status == InvoiceStatus.PENDING
