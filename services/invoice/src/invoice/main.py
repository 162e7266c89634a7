"""The invoice service's HTTP API."""

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI

from common.app import create_service_app
from common.auth import ClosedAccounts
from common.pagination import CursorCodec
from invoice import service
from invoice.config import InvoiceSettings, get_settings
from invoice.models import IdempotencyKey
from invoice.pdf import InvoiceDocument, PdfRenderer, render_pdf
from invoice.router import router, seed_router
from invoice.storage import pdf_store

DESCRIPTION = """
Clients and invoices of the signed-in user. Every endpoint but the health checks needs a
bearer access token; each user sees only their own clients and invoices, and another user's
id answers 404 exactly like a missing one.

Errors are `application/problem+json` (RFC 9457) naming the offending field.

`/invoice`, `/invoice/{id}`, `/invoice/pay/{id}` and `/invoices` keep seed 001's contract.
A card (on `POST /invoice`, or as the body of `POST /invoice/pay/{id}`) pays the invoice
through the payment service: 201 PAID with the card masked (`123456********5678`). The card is
never stored here. A declined card is 402, a payment in progress or an invoice not payable
409, a bad card 422 naming the field, and an unavailable payment service 503 with
`Retry-After`; the invoice is then left as it was, and every payment problem names its
`invoice_id` so a client can pay again with `/invoice/pay/{invoice_id}`.
"""


def create_app(
    settings: InvoiceSettings | None = None,
    render: Callable[[InvoiceDocument], bytes] = render_pdf,
) -> FastAPI:
    """The API application; uvicorn calls this with --factory. Tests may pass what the
    rendering processes call instead of WeasyPrint."""
    settings = settings or get_settings()

    def configure(app: FastAPI) -> None:
        app.state.cursor_codec = CursorCodec(settings.cursor_secret.get_secret_value().encode())

        async def closed_since(since: datetime) -> set[uuid.UUID]:
            async with app.state.sessionmaker() as session:
                return await service.accounts_closed_since(session, since)

        app.state.closed_accounts = ClosedAccounts(closed_since)
        app.include_router(router)
        app.include_router(seed_router)

    app = create_service_app(
        settings,
        title="Ledgerline invoice service",
        description=DESCRIPTION,
        configure=configure,
        idempotency_model=IdempotencyKey,
    )
    shared_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # PDFs render in processes of their own, started with the app (invoice.pdf).
        renderer = PdfRenderer(pdf_store(settings), settings.pdf_render_concurrency, render)
        async with shared_lifespan(app):
            renderer.start()
            app.state.pdf_renderer = renderer
            try:
                yield
            finally:
                renderer.close()

    app.router.lifespan_context = lifespan
    return app
