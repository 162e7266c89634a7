"""The user service's HTTP API."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from common.app import create_service_app
from common.auth import JwksCache, TokenVerifier
from user.config import UserSettings, get_settings
from user.crypto import SecretBox
from user.oidc import ProviderRegistry
from user.router import auth_router, keys_router, users_router

DESCRIPTION = """
Sign-in through OpenID Connect providers, the platform's access and refresh tokens, and the
signed-in user's profile.

Sign-in: `GET /api/auth/{provider}/login` redirects to the provider; the provider sends the
browser back to `/api/auth/{provider}/callback`, which issues the tokens: as JSON when the
login was started without `redirect_uri`, or (a browser app) as an HttpOnly refresh-token
cookie and a redirect to `redirect_uri`, after which the app calls `POST /api/auth/refresh`.

Access tokens are RS256 JWTs valid for 15 minutes, verifiable with the keys at
`/.well-known/jwks.json`. Refresh tokens are exchanged once each: a spent one presented again
within a few seconds, while its successor is unused, gets the same tokens again (two tabs
refreshing together); otherwise it revokes the sign-in it belongs to.

Errors are `application/problem+json` (RFC 9457) naming the offending field.
"""

# The verifier fetches this service's own JWKS in-process, through the app itself, so the
# user service checks its tokens exactly as every other service does, without a network hop.
SELF_JWKS_URL = "http://user-service.internal/.well-known/jwks.json"


def create_app(settings: UserSettings | None = None) -> FastAPI:
    """The API application; uvicorn calls this with --factory."""
    settings = settings or get_settings()

    def configure(app: FastAPI) -> None:
        app.state.secret_box = SecretBox(settings.secret_key.get_secret_value())
        app.state.providers = ProviderRegistry(settings.oidc_providers)
        app.include_router(auth_router)
        app.include_router(users_router)
        app.include_router(keys_router)

    app = create_service_app(
        settings, title="Ledgerline user service", description=DESCRIPTION, configure=configure
    )
    shared_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with shared_lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport) as own:
                app.state.token_verifier = TokenVerifier(
                    # The read is in-process and cheap, so an unknown kid may read the keys
                    # again after a second; never sooner, or forged kids become a flood of
                    # database reads.
                    JwksCache(SELF_JWKS_URL, own, refresh_floor_seconds=1),
                    issuer=settings.auth_issuer,
                    audience=settings.auth_audience,
                )
                yield

    app.router.lifespan_context = lifespan
    return app
