"""The email service's HTTP API."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from common.app import create_service_app
from common.pagination import CursorCodec
from mailer.config import EmailSettings, get_settings
from mailer.router import emails_router, webhooks_router
from mailer.webhooks import SnsVerifier

DESCRIPTION = """
The emails a signed-in user has sent (invoices with their PDF) and the notices sent to their
clients, each with its delivery status and history: queued, sending, sent, then delivered,
bounced or failed, with the provider that carried it. Emails are asked for through the
invoice service (`POST /api/invoices/{id}/send`); this API only reads them. Another user's
email id answers 404 exactly like a missing one.

`/webhooks/...` receives the providers' delivery reports (SendGrid, Mailgun, Amazon SES
through SNS). They carry no token: each is verified by its provider's signature, and a
forged, altered, stale or replayed one is refused with 401 and changes nothing.
"""


def create_app(settings: EmailSettings | None = None) -> FastAPI:
    """The API application; uvicorn calls this with --factory."""
    settings = settings or get_settings()

    def configure(app: FastAPI) -> None:
        app.state.cursor_codec = CursorCodec(settings.cursor_secret.get_secret_value().encode())
        app.include_router(emails_router)
        app.include_router(webhooks_router)

    app = create_service_app(
        settings,
        title="Ledgerline email service",
        description=DESCRIPTION,
        configure=configure,
    )
    shared_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with shared_lifespan(app), httpx.AsyncClient() as http:
            app.state.sns_verifier = SnsVerifier(settings, http)
            yield

    app.router.lifespan_context = lifespan
    return app
