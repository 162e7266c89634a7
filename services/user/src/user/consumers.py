"""Kafka handlers of the user service, as thin as the routes: parse, call the service.

The wallet balance on the profile follows the payment service's `wallet.*` events.
"""

import uuid
from decimal import Decimal

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import CloudEvent
from common.inbox import Handler
from user import service


class WalletEntry(BaseModel):
    """The slice of `wallet.credited` / `wallet.debited` this service reads."""

    owner_id: uuid.UUID
    currency: str
    # The column's precision: a balance it cannot hold fails here, not rounded in silence.
    balance_after: Decimal = Field(max_digits=12, decimal_places=2)
    sequence: int = Field(ge=1)


async def on_wallet_entry(session: AsyncSession, event: CloudEvent) -> None:
    entry = WalletEntry.model_validate(event.data)
    await service.record_wallet_balance(
        session,
        entry.owner_id,
        currency=entry.currency,
        balance=entry.balance_after,
        sequence=entry.sequence,
    )


CONSUMER_GROUP = "user-service"
PAYMENT_TOPIC = "payment.events"
HANDLERS: dict[str, Handler] = {
    "wallet.credited": on_wallet_entry,
    "wallet.debited": on_wallet_entry,
}
TOPICS: list[str] = [PAYMENT_TOPIC]
