"""Dependency aliases of the invoice endpoints.

Async on purpose: FastAPI runs a plain `def` dependency in a thread pool, a hop that costs
more than these lookups.
"""

from typing import Annotated

from fastapi import Depends, Request

from invoice.config import InvoiceSettings
from invoice.payments import PaymentClient
from invoice.pdf import PdfRenderer


async def _settings(request: Request) -> InvoiceSettings:
    settings: InvoiceSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[InvoiceSettings, Depends(_settings)]


async def _payment_client(request: Request) -> PaymentClient:
    """One pooled client per app, made on first use: most requests never pay anything."""
    state = request.app.state
    client: PaymentClient | None = getattr(state, "payment_client", None)
    if client is None:
        settings: InvoiceSettings = state.settings
        client = PaymentClient(
            settings.payment_api_url,
            timeout_seconds=settings.payment_timeout_seconds,
            connect_timeout_seconds=settings.payment_connect_timeout_seconds,
            retry_after_seconds=settings.payment_retry_after_seconds,
        )
        state.payment_client = client
    return client


PaymentClientDep = Annotated[PaymentClient, Depends(_payment_client)]


async def _access_token(request: Request) -> str:
    """The caller's bearer token, already verified by CurrentUser, to pass on to the payment
    service: it decides the owner from the token itself rather than trusting this service."""
    return request.headers.get("authorization", "").partition(" ")[2].strip()


AccessToken = Annotated[str, Depends(_access_token)]


async def _pdf_renderer(request: Request) -> PdfRenderer:
    """The app's renderer and its processes, started with the app (main.create_app)."""
    renderer: PdfRenderer = request.app.state.pdf_renderer
    return renderer


PdfRendererDep = Annotated[PdfRenderer, Depends(_pdf_renderer)]
