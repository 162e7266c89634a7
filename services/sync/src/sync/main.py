"""The sync service's HTTP API."""

from fastapi import FastAPI

from common.app import create_service_app
from sync.config import SyncSettings, get_settings
from sync.crypto import Keyring
from sync.router import router

DESCRIPTION = """
Connects the signed-in owner's billing platform and shows how importing its invoices goes.
Every endpoint but the health checks needs a bearer access token; each owner sees only their
own connection, and another owner's connection id answers 404 like a missing one.

The platform's API key is write-only: it is sealed (AES-256-GCM) as it arrives and never
returned, logged or put in an event. Imported invoices appear in the invoice service's
listing (`/api/invoices`); see docs/sync.md for how the sync works and what it guarantees.

Errors are `application/problem+json` (RFC 9457) naming the offending field.
"""


def create_app(settings: SyncSettings | None = None) -> FastAPI:
    """The API application; uvicorn calls this with --factory."""
    settings = settings or get_settings()
    # Parsed at start-up: a bad SYNC_CONNECTION_KEY stops the service, not a request.
    keyring = Keyring.parse(settings.connection_key.get_secret_value())

    def configure(app: FastAPI) -> None:
        app.state.keyring = keyring
        app.include_router(router)

    return create_service_app(
        settings,
        title="Ledgerline sync service",
        description=DESCRIPTION,
        configure=configure,
    )
