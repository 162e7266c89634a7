"""The payment service's HTTP API."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
from fastapi import FastAPI

from common.app import create_service_app
from common.auth import ClosedAccounts
from common.pagination import CursorCodec
from payment import service
from payment.config import PaymentSettings, get_settings
from payment.models import IdempotencyKey
from payment.providers import PaymentProvider, create_provider
from payment.router import (
    internal_router,
    methods_router,
    payments_router,
    runs_router,
    wallet_router,
)

DESCRIPTION = """
Card payments and the wallet of the signed-in user. Every endpoint but the health checks
needs a bearer access token; each user sees only their own payments and wallet, and another
user's payment id answers 404 exactly like a missing one.

Card numbers are never stored, logged or returned: a card comes back masked
(`123456********5678`) with its expiry and name. Amounts are decimal strings ("12.50").

Errors are `application/problem+json` (RFC 9457) naming the offending field. A declined card
is 402; a provider that is down or times out is 503 with `Retry-After`, and the attempt is
settled with the provider before another one, so a card is never charged twice.

`/internal/...` is for the other services and is not routed by the gateway: the invoice
service pays invoices through `POST /internal/invoice-payments`, the email service will take
and refund fees through `/internal/wallet/debits` and `/internal/wallet/refunds`.
"""


def create_app(
    settings: PaymentSettings | None = None, provider: PaymentProvider | None = None
) -> FastAPI:
    """The API application; uvicorn calls this with --factory. Tests may pass a provider."""
    settings = settings or get_settings()

    def configure(app: FastAPI) -> None:
        app.state.cursor_codec = CursorCodec(settings.cursor_secret.get_secret_value().encode())

        async def closed_since(since: datetime) -> set[uuid.UUID]:
            async with app.state.sessionmaker() as session:
                return await service.accounts_closed_since(session, since)

        app.state.closed_accounts = ClosedAccounts(closed_since)
        app.include_router(internal_router)
        app.include_router(payments_router)
        app.include_router(wallet_router)
        app.include_router(methods_router)
        app.include_router(runs_router)

    app = create_service_app(
        settings,
        title="Ledgerline payment service",
        description=DESCRIPTION,
        configure=configure,
        idempotency_model=IdempotencyKey,
    )
    shared_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The provider's HTTP client lives as long as the app, like the database engine.
        async with shared_lifespan(app), httpx.AsyncClient() as http:
            app.state.provider = provider or create_provider(settings, http)
            yield

    app.router.lifespan_context = lifespan
    return app
