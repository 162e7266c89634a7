"""Idempotency keys: a POST sent again with the same `Idempotency-Key` gets the first answer
instead of running again (Stripe's semantics).

A client that lost the answer to a request (a timeout, a dropped connection) cannot tell
whether it was carried out. With a key, sending it again is always safe: within 24 hours the
same user, key, method, path and body get the stored status, body and content type back, with
`Idempotent-Replayed: true`; the same key with another request is refused with 422, and a
second request while the first still runs with 409. A 5xx, or an exception, stores nothing
and frees the key, so the client can try again; a 4xx is stored like a success.

The key is claimed in a short transaction of its own; the answer is stored in the endpoint's
own transaction (common.db hands it over uncommitted), so the request's effects and its kept
answer commit together or not at all: see docs/idempotency.md.
"""

import hashlib
import hmac
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

import orjson
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import (
    BINARY,
    VARBINARY,
    DateTime,
    Delete,
    SmallInteger,
    String,
    Text,
    Update,
    delete,
    update,
)
from sqlalchemy.dialects.mysql import MEDIUMBLOB
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.auth import ClosedAccounts, KeysUnavailable, TokenVerifier
from common.db import COMMIT_WITH_ANSWER, BinaryUUID
from common.errors import (
    DATABASE_RETRY_AFTER_SECONDS,
    PROBLEM_JSON,
    Unauthorized,
    database_unavailable,
    problem_response,
)
from common.logging import get_logger
from common.outbox import utcnow
from common.worker import Schedule

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# How long a key stands for the request it was first sent with.
KEEP_FOR = timedelta(hours=24)
# How long a claimed key stays locked to the request that claimed it. The gateway gives up on
# a request after 30 s, so a key still in progress after this was left by a process that died.
LOCK_FOR = timedelta(seconds=60)

# 1 to 255 printable ASCII characters. HTTP drops spaces around a header value, so a key can
# neither begin nor end with one; inside, spaces are kept.
_KEY_PATTERN = "^[!-~]([ -~]{0,253}[!-~])?$"
_VALID_KEY = re.compile(_KEY_PATTERN.encode())
_KEY_HEADER_NAME = KEY_HEADER.lower().encode()
# What a replay repeats of the first response's headers; the rest (request id, content
# length) belongs to each reply.
_KEPT_HEADERS = (b"content-type", b"location")

log = get_logger(__name__)


class KeyState(StrEnum):
    """A key is in progress from its claim until its answer is stored."""

    IN_PROGRESS = "in_progress"
    DONE = "done"


class IdempotencyKeyMixin:
    """Columns of a service's `idempotency_keys` table; the service maps it on its own base."""

    __tablename__ = "idempotency_keys"

    owner_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True)
    # Bytes compared byte for byte: keys are case-sensitive, which a text collation is not.
    key: Mapped[bytes] = mapped_column(VARBINARY(255), primary_key=True)
    # SHA-256 of method, path, query string and body.
    fingerprint: Mapped[bytes] = mapped_column(BINARY(32))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    locked_until: Mapped[datetime] = mapped_column(DateTime)
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    # The kept headers as a JSON list of [name, value] pairs.
    response_headers: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[bytes | None] = mapped_column(MEDIUMBLOB)

    if TYPE_CHECKING:
        # The declarative base of the service that maps this mixin supplies the constructor.
        def __init__(self, **columns: Any) -> None: ...


def request_fingerprint(
    secret: bytes, method: str, path: str, query_string: bytes, body: bytes
) -> bytes:
    """What makes two requests the same request: method, path, query string and body.

    Keyed (HMAC), because a body may hold a card number: a plain hash of so few unknown
    digits could be reversed by trying them all, and the table keeps the fingerprint."""
    # A JSON array ends where it ends, so no path or query can run on into the body.
    head = orjson.dumps([method, path, query_string.decode("latin-1")])
    return hmac.new(secret, head + body, hashlib.sha256).digest()


@dataclass(frozen=True)
class _StoredAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class _Claimed:
    created_at: datetime  # with owner and key, names this claim and no later one


class _Busy:
    pass


class _Mismatch:
    pass


_Claim = _Claimed | _StoredAnswer | _Busy | _Mismatch


class IdempotencyMiddleware:
    """Answers a POST that carries an Idempotency-Key from the stored first answer, or runs
    it and stores its answer. Requests without the key, or without a valid bearer token (the
    endpoint refuses those itself), pass through untouched."""

    def __init__(
        self, app: ASGIApp, model: type[IdempotencyKeyMixin], excluded_paths: Collection[str] = ()
    ) -> None:
        self.app = app
        self.model = model
        self.excluded_paths = frozenset(excluded_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] in self.excluded_paths
        ):
            await self.app(scope, receive, send)
            return
        key = next((value for name, value in scope["headers"] if name == _KEY_HEADER_NAME), None)
        try:
            owner_id = await _owner_of(scope) if key is not None else None
        except KeysUnavailable as unavailable:
            # The token cannot be checked now: neither run the request without its key nor
            # answer 401 for a token that may be good.
            response = problem_response(
                unavailable.status,
                unavailable.title,
                unavailable.detail,
                headers=unavailable.headers,
            )
            await response(scope, receive, send)
            return
        if key is None or owner_id is None:
            await self.app(scope, receive, send)
            return
        if not _VALID_KEY.fullmatch(key):
            await _refuse_key(scope, receive, send, "must be 1 to 255 printable ASCII characters")
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending the whole body: nobody to answer
        secret = scope["app"].state.settings.idempotency_secret.get_secret_value().encode()
        fingerprint = request_fingerprint(
            secret, scope["method"], scope["path"], scope.get("query_string", b""), body
        )
        sessionmaker: async_sessionmaker[AsyncSession] = scope["app"].state.sessionmaker
        claim = await self._claim(sessionmaker, owner_id, key, fingerprint)
        if isinstance(claim, _StoredAnswer):
            log.info("idempotent_replay", status=claim.status)
            await _replay(send, claim)
        elif isinstance(claim, _Mismatch):
            await _refuse_key(
                scope, receive, send, "was already used with another request (method, path or body)"
            )
        elif isinstance(claim, _Busy):
            response = problem_response(
                409,
                "Conflict",
                f"A request with this {KEY_HEADER} is still in progress; try again later",
            )
            await response(scope, receive, send)
        else:
            await self._run(scope, body, receive, send, sessionmaker, owner_id, key, claim)

    async def _claim(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        owner_id: uuid.UUID,
        key: bytes,
        fingerprint: bytes,
    ) -> _Claim:
        """Take the key for this request, or say why not, in short transactions of its own."""
        model = self.model
        # A key freed between the failed insert and the look at its row is tried again; a
        # third such race in a row is answered as busy.
        for _ in range(3):
            now = utcnow()
            try:
                async with sessionmaker() as session, session.begin():
                    session.add(
                        model(
                            owner_id=owner_id,
                            key=key,
                            fingerprint=fingerprint,
                            state=KeyState.IN_PROGRESS,
                            created_at=now,
                            locked_until=now + LOCK_FOR,
                        )
                    )
                return _Claimed(now)
            except IntegrityError:
                pass  # the key is held: the row says by what
            async with sessionmaker() as session, session.begin():
                # Locked, so two retries of a dead request cannot both take it over.
                row = await session.get(model, (owner_id, key), with_for_update=True)
                if row is None:
                    continue
                if row.created_at > now - KEEP_FOR:
                    if row.fingerprint != fingerprint:
                        return _Mismatch()
                    if row.state == KeyState.DONE:
                        return _stored_answer(row)
                    if row.locked_until > now:
                        return _Busy()
                # Expired, or left in progress by a request whose process died: start afresh.
                row.fingerprint = fingerprint
                row.state = KeyState.IN_PROGRESS
                row.created_at = now
                row.locked_until = now + LOCK_FOR
                row.response_status = row.response_headers = row.response_body = None
                log.info("idempotency_key_taken_over")
                return _Claimed(now)
        return _Busy()

    async def _run(
        self,
        scope: Scope,
        body: bytes,
        receive: Receive,
        send: Send,
        sessionmaker: async_sessionmaker[AsyncSession],
        owner_id: uuid.UUID,
        key: bytes,
        claim: _Claimed,
    ) -> None:
        """Run the endpoint on the body already read, hold its answer until it is stored (so
        a retry the moment it arrives finds it), then send it."""
        body_given = False

        async def receive_body() -> Message:
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body, only the disconnect is left to wait for

        model = self.model
        this_claim = (
            model.owner_id == owner_id,
            model.key == key,
            model.state == KeyState.IN_PROGRESS,
            model.created_at == claim.created_at,
        )
        held = _HeldResponse()
        # The endpoint's write session, uncommitted (common.db): committed below with the answer.
        handed_over: list[AsyncSession] = []
        scope[COMMIT_WITH_ANSWER] = handed_over
        release = delete(model).where(*this_claim)
        try:
            try:
                await self.app(scope, receive_body, held)
            except BaseException:
                await _write(sessionmaker, release, "release")
                raise
            if held.start is None or held.start["status"] >= 500:
                # The request failed, maybe halfway: the client may retry it with the same key.
                await _write(sessionmaker, release, "release")
                if held.start is None:
                    return
            else:
                kept = [
                    [name.decode("latin-1"), value.decode("latin-1")]
                    for name, value in held.start.get("headers", [])
                    if name.lower() in _KEPT_HEADERS
                ]
                stored = (
                    update(model)
                    .where(*this_claim)
                    .values(
                        state=KeyState.DONE,
                        response_status=held.start["status"],
                        response_headers=orjson.dumps(kept).decode(),
                        response_body=held.body,
                    )
                )
                if handed_over:
                    refused = await _commit_with_answer(
                        handed_over[0], stored, sessionmaker, release
                    )
                    if refused is not None:
                        await refused(scope, receive, send)
                        return
                else:
                    await _write(sessionmaker, stored, "store")
        finally:
            for session in handed_over:
                await session.close()  # rolls back whatever was not committed
        await send(held.start)
        await send({"type": "http.response.body", "body": held.body})


class _HeldResponse:
    """An ASGI send that keeps the response instead of sending it."""

    def __init__(self) -> None:
        self.start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        elif message["type"] == "http.response.body":
            self._chunks.append(message.get("body", b""))

    @property
    def body(self) -> bytes:
        return b"".join(self._chunks)


async def _commit_with_answer(
    session: AsyncSession,
    stored: Update,
    sessionmaker: async_sessionmaker[AsyncSession],
    release: Delete,
) -> JSONResponse | None:
    """Store the answer in the request's own transaction and commit both; None when done, or
    the problem to answer instead when nothing was kept."""
    try:
        if await _rows_changed(session, stored) == 0:
            # Held longer than LOCK_FOR and taken over by a retry, which runs the request
            # itself: this run's effects are dropped rather than kept twice.
            await session.rollback()
            log.warning("idempotency_claim_lost", action="store")
            return problem_response(
                409,
                "Conflict",
                f"A retry with this {KEY_HEADER} took the request over; its answer stands",
            )
        await session.commit()
    except Exception as exc:
        await session.rollback()
        # Nothing was kept (or, if the commit did reach the server, the answer was kept with
        # it and the release below changes nothing): the client may send it again.
        await _write(sessionmaker, release, "release")
        if not database_unavailable(exc):
            raise
        log.warning("idempotency_commit_failed", error_type=type(exc).__name__)
        return problem_response(
            503,
            "Service unavailable",
            "The request could not be completed; send it again with the same key",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    return None


async def _write(
    sessionmaker: async_sessionmaker[AsyncSession], statement: Delete | Update, what: str
) -> None:
    """Store or release a claim. A failure is logged, not raised: the endpoint has run and its
    answer still goes out; the key stays locked until `locked_until`, as after a crash."""
    try:
        async with sessionmaker() as session, session.begin():
            changed = await _rows_changed(session, statement)
        if changed == 0:
            # Held longer than LOCK_FOR, and taken over by a retry meanwhile.
            log.warning("idempotency_claim_lost", action=what)
    except Exception as exc:
        log.warning("idempotency_write_failed", action=what, error_type=type(exc).__name__)


async def _rows_changed(session: AsyncSession, statement: Delete | Update) -> int:
    result = await session.execute(statement)
    # An UPDATE or a DELETE answers a CursorResult; the typing only promises a Result.
    return cast(CursorResult[Any], result).rowcount


def _stored_answer(row: IdempotencyKeyMixin) -> _StoredAnswer:
    headers = orjson.loads(row.response_headers or "[]")
    return _StoredAnswer(
        status=row.response_status or 200,
        headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
        body=row.response_body or b"",
    )


async def _owner_of(scope: Scope) -> uuid.UUID | None:
    """The token's user, by the checks the endpoint's CurrentUser makes (a valid bearer token
    of an account not deleted); None when the request has no such token."""
    scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    state = scope["app"].state
    verifier: TokenVerifier = state.token_verifier
    try:
        user = await verifier.verify(token.strip())
    except Unauthorized:
        return None
    closed: ClosedAccounts | None = getattr(state, "closed_accounts", None)
    if closed is not None and await closed.is_closed(user.id):
        return None
    return user.id


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnects first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _replay(send: Send, answer: _StoredAnswer) -> None:
    headers = [
        *answer.headers,
        (b"content-length", str(len(answer.body)).encode()),
        (REPLAYED_HEADER.lower().encode(), b"true"),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def _refuse_key(scope: Scope, receive: Receive, send: Send, problem: str) -> None:
    detail = f"{KEY_HEADER} {problem}"
    errors = [{"field": KEY_HEADER, "in": "header", "message": problem}]
    response = problem_response(422, "Invalid input", detail, errors=errors)
    await response(scope, receive, send)


async def purge_expired_keys(
    sessionmaker: async_sessionmaker[AsyncSession],
    model: type[IdempotencyKeyMixin],
    batch_size: int = 1000,
) -> int:
    """Delete keys older than KEEP_FOR, a batch per transaction; the number deleted."""
    cutoff = utcnow() - KEEP_FOR
    purged = 0
    while True:
        async with sessionmaker() as session, session.begin():
            deleted = await _rows_changed(
                session,
                delete(model)
                .where(model.created_at <= cutoff)
                .with_dialect_options(mysql_limit=batch_size),
            )
        purged += deleted
        if deleted < batch_size:
            break
    if purged:
        log.info("idempotency_keys_purged", count=purged)
    return purged


def purge_schedule(model: type[IdempotencyKeyMixin], every_seconds: float = 3600) -> Schedule:
    """The worker's schedule that runs purge_expired_keys on the service's model."""

    async def purge(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        return await purge_expired_keys(sessionmaker, model)

    return Schedule("idempotency_key_purge", every_seconds, purge)


# --- installing it ---------------------------------------------------------------------------


def install_idempotency(
    app: FastAPI, model: type[IdempotencyKeyMixin], excluded_paths: Collection[str] = ()
) -> None:
    """Idempotency keys on every POST of the app but the excluded paths, and in its OpenAPI
    document. Call after the routes are in place, and before the body-size limit is added,
    so the limit wraps this middleware and applies first."""
    excluded = frozenset(excluded_paths)
    app.add_middleware(IdempotencyMiddleware, model=model, excluded_paths=excluded)
    build_document = app.openapi  # whatever builds the document so far; this adds to it

    def openapi() -> dict[str, Any]:
        document = build_document()
        # The shared Problem schema, when the document has one (common.openapi adds it).
        schemas = document.get("components", {}).get("schemas", {})
        problem = (
            {"schema": {"$ref": "#/components/schemas/Problem"}} if "Problem" in schemas else {}
        )
        document.setdefault("components", {}).setdefault("headers", {})[REPLAYED_HEADER] = {
            "description": f"`true` when this is the stored answer to an earlier request with "
            f"the same {KEY_HEADER}",
            "schema": {"type": "string", "enum": ["true"]},
        }
        for path, item in document.get("paths", {}).items():
            operation = item.get("post")
            # Only an operation that takes a bearer token knows whose key it is.
            if path not in excluded and operation is not None and operation.get("security"):
                _document_operation(operation, problem)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# Answers given before a key is claimed (no valid token, a body too large, the gateway's rate
# limit), so never replayed.
_NEVER_STORED = {"401", "413", "429"}
_REPLAYED_REF = {"$ref": f"#/components/headers/{REPLAYED_HEADER}"}


def _document_operation(operation: dict[str, Any], problem: dict[str, Any]) -> None:
    """Add the header, the replies and the replay header to one POST operation; adding them
    again changes nothing (the document may be built and handed here more than once)."""
    parameters = operation.setdefault("parameters", [])
    if not any(p.get("in") == "header" and p.get("name") == KEY_HEADER for p in parameters):
        parameters.append(
            {
                "name": KEY_HEADER,
                "in": "header",
                "required": False,
                "description": (
                    "Makes the request safe to send again. Within 24 hours, the same key with "
                    "the same request returns the first answer without running it again "
                    f"(marked `{REPLAYED_HEADER}: true`); with another request, 422; while the "
                    "first is still running, 409. A 5xx answer is not kept, so the request may "
                    "be retried with the same key. Keys belong to the signed-in user."
                ),
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": _KEY_PATTERN,
                },
            }
        )
    responses = operation.setdefault("responses", {})
    _add_answer(
        responses, "409", f"a request with the same {KEY_HEADER} is still in progress", problem
    )
    _add_answer(
        responses, "422", f"the {KEY_HEADER} was already used with another request", problem
    )
    for status, response in responses.items():
        if status[0] in "24" and status not in _NEVER_STORED:
            response.setdefault("headers", {})[REPLAYED_HEADER] = _REPLAYED_REF


def _add_answer(
    responses: dict[str, Any], status: str, reason: str, problem: dict[str, Any]
) -> None:
    """A problem answer for this reason, or the reason added to the status's description."""
    answer = responses.get(status)
    if answer is None:
        responses[status] = {
            "description": reason[0].upper() + reason[1:],
            "content": {PROBLEM_JSON: problem},
        }
    elif KEY_HEADER not in answer.get("description", ""):
        answer["description"] = f"{answer.get('description', '')}; or {reason}".lstrip("; ")
