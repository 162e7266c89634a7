"""Clients' saved payment methods: a card handed to the provider once, kept here as the
provider's token with the masked number, expiry and name, and the owner's auto-pay consent.
The monthly billing run charges the newest method of a client (payment/billing.py)."""

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import InvalidInput
from common.ids import uuid7
from common.logging import get_logger
from common.outbox import utcnow
from common.pagination import CursorCodec, Page
from payment import repository
from payment.exceptions import CardRejected, PaymentMethodNotFound, ProviderUnavailable
from payment.models import PaymentMethod
from payment.providers import CardDetails, PaymentProvider, ProviderUnreachable, SavedCard

log = get_logger(__name__)


@dataclass(frozen=True)
class NewPaymentMethod:
    client_id: int
    card: CardDetails


async def add_payment_method(
    session: AsyncSession,
    provider: PaymentProvider,
    owner_id: uuid.UUID,
    new: NewPaymentMethod,
    retry_after_seconds: int,
) -> PaymentMethod:
    """Save the card at the provider and keep its token; the caller commits."""
    saved = await provider.save_card(new.card)
    if not isinstance(saved, SavedCard):
        if saved.field is not None:
            raise CardRejected(saved.failure_code or "invalid_card", saved.field, None)
        raise ProviderUnavailable(retry_after_seconds)
    now = utcnow()
    method = PaymentMethod(
        id=uuid7(),
        owner_id=owner_id,
        client_id=new.client_id,
        provider=provider.name,
        provider_token=saved.token,
        card_number_masked=saved.masked_number,
        card_last4=saved.last4,
        card_expiry=new.card.expiry,
        card_name=new.card.name,
        autopay_consent_at=now,
        created_at=now,
    )
    session.add(method)
    log.info("payment_method_added", payment_method_id=str(method.id), client_id=new.client_id)
    return method


async def remove_payment_method(
    session: AsyncSession, provider: PaymentProvider, owner_id: uuid.UUID, method_id: uuid.UUID
) -> None:
    """Forget the method here and at the provider; another owner's id is a missing one."""
    method = await repository.get_payment_method(session, owner_id, method_id)
    if method is None:
        raise PaymentMethodNotFound()
    try:
        await provider.forget_card(method.provider_token)
    except ProviderUnreachable as exc:
        # The token is no longer used by anything of ours; the provider's copy is harmless
        # and its own vault expires unused cards.
        log.warning("payment_method_not_forgotten_at_provider", error=str(exc))
    await session.delete(method)


async def list_payment_methods(
    session: AsyncSession,
    codec: CursorCodec,
    owner_id: uuid.UUID,
    client_id: int | None,
    limit: int,
    cursor: str | None,
) -> Page[PaymentMethod]:
    """One page of the owner's methods, newest first, of one client when given."""
    before = None
    if cursor is not None:
        position = codec.decode(cursor)
        if position.get("q") != "payment_methods" or position.get("c") != client_id:
            raise InvalidInput("The cursor belongs to a different listing", field="cursor")
        try:
            before = uuid.UUID(hex=position.get("id"))
        except (TypeError, ValueError):
            raise InvalidInput("The cursor is not one this API issued", field="cursor") from None
    rows = list(
        await repository.list_payment_methods(session, owner_id, client_id, before, limit + 1)
    )
    next_cursor = None
    if len(rows) > limit:
        position = {"q": "payment_methods", "c": client_id, "id": rows[limit - 1].id.hex}
        next_cursor = codec.encode(position)
    return Page(rows[:limit], next_cursor)
