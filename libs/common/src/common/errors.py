"""One error base class that carries its HTTP status, rendered as RFC 9457 problem+json."""

from typing import Any

import asyncmy.errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from common.logging import get_logger

PROBLEM_JSON = "application/problem+json"
log = get_logger(__name__)


class ProblemError(Exception):
    """A domain error that becomes a problem+json reply; subclasses name the fact."""

    status: int = 400
    title: str = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extensions = extensions
        self.headers: dict[str, str] = {}


class NotFound(ProblemError):
    status = 404
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"


class InvalidInput(ProblemError):
    status = 422
    title = "Invalid input"


class Unauthorized(ProblemError):
    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str = "A valid access token is required") -> None:
        super().__init__(detail)
        self.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class ServiceUnavailable(ProblemError):
    """Something the request needs is down for now; `Retry-After` says when to try again."""

    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after: int = 2, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers["Retry-After"] = str(retry_after)


class PayloadTooLarge(ProblemError):
    status = 413
    title = "Payload too large"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """The one place a problem document is built."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if errors:
        body["errors"] = errors
    body.update(extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _field_error(error: dict[str, Any]) -> dict[str, Any]:
    location = [str(part) for part in error.get("loc", ())]
    where = location[0] if location else "request"
    if error.get("type") == "json_invalid":
        # The location after "body" is a character offset, not a field.
        return {"field": "body", "in": "body", "message": "is not valid JSON"}
    field = ".".join(location[1:]) or where
    # Pydantic's message only; the rejected input is not echoed, it may hold a secret.
    return {"field": field, "in": where, "message": error.get("msg", "is invalid")}


async def _handle_problem(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ProblemError):  # registered for this type only
        raise exc
    errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
    return problem_response(
        exc.status, exc.title, exc.detail, errors=errors, headers=exc.headers, **exc.extensions
    )


async def _handle_validation(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        raise exc
    errors = [_field_error(error) for error in exc.errors()]
    fields = ", ".join(sorted({error["field"] for error in errors}))
    return problem_response(422, "Invalid input", f"Invalid value for: {fields}", errors=errors)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method the path answers to: Starlette names only those of the first route
    that matched the path, and a path often has one route per method."""
    allowed = [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]
    return ", ".join(allowed)


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for this type only
        raise exc
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        # The body could not be decoded as text (not UTF-8): the same answer as malformed
        # JSON, so a client has one rule for a body that cannot be read.
        return problem_response(
            422,
            "Invalid input",
            "Invalid value for: body",
            errors=[{"field": "body", "in": "body", "message": "is not UTF-8 encoded JSON"}],
        )
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
    return problem_response(exc.status_code, title, str(exc.detail), headers=headers or None)


# How long a client waits before trying again when the database could not be reached: a
# connection lost or refused (a restart, a failover, a network blip) is usually back in a
# second or two, and every client retrying at once should not all come back in the same one.
DATABASE_RETRY_AFTER_SECONDS = 2


# MySQL's error numbers for a server that could not be reached or gave up on the transaction:
# can't connect (2002, 2003), gone away or lost mid-query (2006, 2013, 2055), too many
# connections (1040), shutting down (1053), aborted or killed connections (1152, 1927), network
# read/write failures (1158-1161), lock wait timeout and deadlock (1205, 1213), disconnected
# for inactivity (4031).
UNAVAILABLE_ERRORS = frozenset(
    {1040, 1053, 1152, 1158, 1159, 1160, 1161, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055, 4031}
)


def database_unavailable(exc: BaseException) -> bool:
    """True for a failure to reach the database, as opposed to a wrong statement, a broken
    constraint or a trigger's refusal: the connection lost or refused, the pool out of
    connections in time, a lock wait or deadlock the server gave up on. Nothing was
    committed; the same request may be sent again."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection in time
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        return isinstance(code, int) and code in UNAVAILABLE_ERRORS
    if isinstance(exc, asyncmy.errors.Error):
        # The driver's own error, where SQLAlchemy lets one through unwrapped: setting a new
        # connection's isolation level on a server that has just gone away, for one.
        code = exc.args[0] if exc.args else None
        return isinstance(code, int) and code in UNAVAILABLE_ERRORS
    return isinstance(exc, ConnectionError)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):
        # A dependency outage, not a bug: 503 with Retry-After, which clients and the gateway
        # treat as "try again" (a keyed POST answered 5xx keeps nothing: common.idempotency).
        log.warning("database_unavailable", error_type=type(exc).__name__, path=request.url.path)
        return problem_response(
            503,
            "Service unavailable",
            "The database could not be reached; try again shortly",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return problem_response(500, "Internal error", "The request could not be completed")


def install_error_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(Exception, _handle_unexpected)
