"""The invoice service's HTTP API."""

import uuid
from datetime import datetime

from fastapi import FastAPI

from common.app import create_service_app
from common.auth import ClosedAccounts
from common.pagination import CursorCodec
from invoice import service
from invoice.config import InvoiceSettings, get_settings
from invoice.models import IdempotencyKey
from invoice.router import router, seed_router

DESCRIPTION = """
Clients and invoices of the signed-in user. Every endpoint but the health checks needs a
bearer access token; each user sees only their own clients and invoices, and another user's
id answers 404 exactly like a missing one.

Errors are `application/problem+json` (RFC 9457) naming the offending field.

`/invoice`, `/invoice/{id}` and `/invoices` keep seed 001's contract. Card payment
(seed 001's `card` field and `/invoice/pay/{id}`) comes with the payment service: a request
carrying a card is refused with 422 for now.
"""


def create_app(settings: InvoiceSettings | None = None) -> FastAPI:
    """The API application; uvicorn calls this with --factory."""
    settings = settings or get_settings()

    def configure(app: FastAPI) -> None:
        app.state.cursor_codec = CursorCodec(settings.cursor_secret.get_secret_value().encode())

        async def closed_since(since: datetime) -> set[uuid.UUID]:
            async with app.state.sessionmaker() as session:
                return await service.accounts_closed_since(session, since)

        app.state.closed_accounts = ClosedAccounts(closed_since)
        app.include_router(router)
        app.include_router(seed_router)

    return create_service_app(
        settings,
        title="Ledgerline invoice service",
        description=DESCRIPTION,
        configure=configure,
        idempotency_model=IdempotencyKey,
    )
