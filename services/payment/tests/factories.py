"""Request bodies and helpers with keyword overrides; the cards are seed 001's."""

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from common.ids import uuid7
from common.outbox import utcnow
from payment.models import OutboxMessage, Payment, PaymentKind, PaymentStatus

# Seed 001's example cards: they fail the Luhn check and must be accepted all the same.
SEED_CARD = "1234567812345678"
SEED_CARD_SPACED = "1234 5656 7822 5678"
MASKED_SEED_CARD = "123456********5678"
# FakePay declines a card ending 0002 (insufficient funds), like real providers' test cards.
DECLINED_CARD = "4000 0000 0000 0002"


def card(**overrides: Any) -> dict[str, Any]:
    return {"number": SEED_CARD, "expiry": "01-2040", "name": "J Doe", **overrides}


def invoice_payment(**overrides: Any) -> dict[str, Any]:
    return {
        "invoice_id": str(uuid.uuid4()),
        "amount": "99.99",
        "currency": "USD",
        "description": "Software License Fee",
        "card": card(),
        **overrides,
    }


async def pay_invoice(
    api: httpx.AsyncClient, auth: dict[str, str], **overrides: Any
) -> httpx.Response:
    return await api.post(
        "/internal/invoice-payments", json=invoice_payment(**overrides), headers=auth
    )


async def top_up(
    api: httpx.AsyncClient, auth: dict[str, str], amount: str = "25.00", **overrides: Any
) -> httpx.Response:
    body = {"amount": amount, "currency": "USD", "card": card(), **overrides}
    return await api.post("/api/wallet/topups", json=body, headers=auth)


async def debit(
    api: httpx.AsyncClient, auth: dict[str, str], amount: str = "1.00", **overrides: Any
) -> httpx.Response:
    body = {
        "reference": f"send-{uuid.uuid4()}",
        "amount": amount,
        "currency": "USD",
        "description": "Invoice sent by email",
        **overrides,
    }
    return await api.post("/internal/wallet/debits", json=body, headers=auth)


async def payment_row(
    sessionmaker: async_sessionmaker[AsyncSession], payment_id: str | uuid.UUID
) -> Payment:
    async with sessionmaker() as session:
        payment = await session.get(Payment, uuid.UUID(str(payment_id)))
    assert payment is not None
    return payment


async def payments_of_invoice(
    sessionmaker: async_sessionmaker[AsyncSession], invoice_id: str
) -> list[Payment]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Payment).where(Payment.invoice_id == uuid.UUID(invoice_id)).order_by(Payment.id)
        )
        return list(rows)


async def age_payments(
    sessionmaker: async_sessionmaker[AsyncSession], invoice_id: str, seconds: int
) -> None:
    """Move an invoice's attempts into the past, as if that much time had gone by."""
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Payment)
            .where(Payment.invoice_id == uuid.UUID(invoice_id))
            .values(created_at=func.timestampadd(text("SECOND"), -seconds, Payment.created_at))
        )


async def staged_events(
    sessionmaker: async_sessionmaker[AsyncSession], containing: str
) -> list[CloudEvent]:
    """Events in the outbox whose payload mentions the text, in the order they were staged."""
    async with sessionmaker() as session:
        payloads = await session.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.payload.contains(containing))
            .order_by(OutboxMessage.id)
        )
        return [CloudEvent.model_validate_json(p) for p in payloads]


async def insert_attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
    owner_id: uuid.UUID,
    invoice_id: str,
    status: PaymentStatus = PaymentStatus.PROCESSING,
    age_seconds: int = 0,
) -> Payment:
    """An invoice's attempt as a process that died mid-charge leaves it."""
    started = utcnow() - timedelta(seconds=age_seconds)
    payment = Payment(
        id=uuid7(),
        owner_id=owner_id,
        kind=PaymentKind.INVOICE,
        invoice_id=uuid.UUID(invoice_id),
        active_invoice_id=uuid.UUID(invoice_id),
        status=status,
        amount=Decimal("42.00"),
        currency="USD",
        description="Attempt of a process that died",
        provider="fakepay",
        transaction_id=invoice_id,
        card_number_masked=MASKED_SEED_CARD,
        card_last4="5678",
        card_expiry="01-2040",
        card_name="J Doe",
        created_at=started,
        updated_at=started,
    )
    async with sessionmaker() as session, session.begin():
        session.add(payment)
    return payment


async def age_payments_by_id(
    sessionmaker: async_sessionmaker[AsyncSession], payment_id: str, seconds: int
) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Payment)
            .where(Payment.id == uuid.UUID(payment_id))
            .values(created_at=func.timestampadd(text("SECOND"), -seconds, Payment.created_at))
        )
