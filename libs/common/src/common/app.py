"""The FastAPI application shell every service shares: lifespan, middleware, errors, health."""

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from common.auth import JwksCache, TokenVerifier
from common.config import BaseServiceSettings
from common.db import create_engine, create_read_engine, create_sessionmaker
from common.errors import install_error_handlers
from common.health import router as health_router
from common.idempotency import IdempotencyKeyMixin, install_idempotency
from common.logging import configure_logging
from common.metrics import HttpMetricsMiddleware, metrics_endpoint
from common.middleware import (
    BodySizeLimitMiddleware,
    RequestContextMiddleware,
    RetryReadMiddleware,
)
from common.openapi import install_openapi
from common.tracing import configure_tracing, server_telemetry


def create_service_app(
    settings: BaseServiceSettings,
    *,
    title: str,
    description: str,
    version: str = "0.1.0",
    configure: Callable[[FastAPI], None],
    idempotency_model: type[IdempotencyKeyMixin] | None = None,
    idempotency_excluded_paths: Collection[str] = (),
) -> FastAPI:
    """An app with the database engine, token verifier and shared middleware in place."""
    configure_logging(settings.service_name, settings.log_level, settings.log_format)
    configure_tracing(settings.service_name, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.database_url.get_secret_value()
        engine = create_engine(url, settings.database_pool_size)
        # Reads have a pool of their own, in autocommit (common.db.create_read_engine): one
        # pool cannot switch a connection's mode per request without a round trip or two.
        read_engine = create_read_engine(url, settings.database_pool_size)
        async with httpx.AsyncClient() as http:
            app.state.settings = settings
            app.state.engine = engine
            app.state.sessionmaker = create_sessionmaker(engine)
            app.state.read_engine = read_engine
            app.state.read_sessionmaker = create_sessionmaker(read_engine)
            app.state.token_verifier = TokenVerifier(
                JwksCache(settings.auth_jwks_url, http),
                issuer=settings.auth_issuer,
                audience=settings.auth_audience,
            )
            try:
                yield
            finally:
                await read_engine.dispose()
                await engine.dispose()

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        # Outside every middleware: the request's log line carries its trace id.
        telemetry=server_telemetry(),
    )
    install_error_handlers(app)
    app.include_router(health_router)
    # Prometheus' scrape, inside the network only: the gateway routes no /metrics.
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    configure(app)
    install_openapi(app)
    # Innermost of the middleware: a retried read is logged and measured as one request.
    app.add_middleware(RetryReadMiddleware)
    if idempotency_model is not None:
        # Before the body-size limit, which so wraps it and refuses an oversized body first.
        install_idempotency(app, idempotency_model, idempotency_excluded_paths)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    # Outermost: a request refused by any middleware above is counted too.
    app.add_middleware(HttpMetricsMiddleware)
    return app
