"""Idempotency keys on a small app built like every service's, on a real schema: a POST sent
again with its key is answered from the first answer and does not run again."""

import asyncio
import hashlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr
from sqlalchemy import String, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.app import create_service_app
from common.auth import CurrentUser
from common.config import BaseServiceSettings
from common.db import SessionDep, create_engine, service_metadata
from common.errors import Conflict
from common.idempotency import (
    KEEP_FOR,
    IdempotencyKeyMixin,
    KeyState,
    purge_expired_keys,
    request_fingerprint,
)
from common.outbox import utcnow
from common.testing.identity import ISSUER, TestIssuer
from common.testing.plugin import temporary_database
from common.testing.servers import MysqlServer


class Base(DeclarativeBase):
    metadata = service_metadata()


class IdempotencyKey(IdempotencyKeyMixin, Base):
    pass


class Record(Base):
    """What a keyed endpoint writes in its own transaction."""

    __tablename__ = "records"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))


class Thing(BaseModel):
    name: str


# How often each endpoint ran, by the name in the body (each test uses its own names).
runs: Counter[str] = Counter()
# The slow endpoint says it started, then waits to be let go.
started: dict[str, asyncio.Event] = {}
let_go: dict[str, asyncio.Event] = {}


def configure(app: FastAPI) -> None:
    @app.post("/things", status_code=status.HTTP_201_CREATED)
    async def create_thing(thing: Thing, user: CurrentUser, response: Response) -> dict[str, Any]:
        runs[thing.name] += 1
        thing_id = uuid.uuid4().hex
        response.headers["Location"] = f"/things/{thing_id}"
        return {"id": thing_id, "name": thing.name, "owner": str(user.id)}

    @app.post("/slow", status_code=status.HTTP_201_CREATED)
    async def slow(thing: Thing, user: CurrentUser) -> dict[str, Any]:
        runs[thing.name] += 1
        started[thing.name].set()
        await asyncio.wait_for(let_go[thing.name].wait(), timeout=10)
        return {"name": thing.name}

    @app.post("/flaky", status_code=status.HTTP_201_CREATED, response_model=None)
    async def flaky(thing: Thing, user: CurrentUser) -> dict[str, Any] | JSONResponse:
        """Fails the first time for each name: by answering 503, or by raising."""
        runs[thing.name] += 1
        if runs[thing.name] == 1:
            if thing.name.startswith("raise"):
                raise RuntimeError("the first attempt breaks")
            return JSONResponse({"detail": "try later"}, status_code=503)
        return {"name": thing.name}

    @app.post("/refused")
    async def refused(thing: Thing, user: CurrentUser) -> None:
        runs[thing.name] += 1
        raise Conflict(f"{thing.name} is taken")

    @app.post("/records", status_code=status.HTTP_201_CREATED)
    async def create_record(thing: Thing, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
        """Writes a record; a name starting with `crash` fails right after the commit, as a
        process killed between committing and answering does."""
        runs[thing.name] += 1
        session.add(Record(name=thing.name))
        if thing.name.startswith("crash"):

            def crash(_session: Any) -> None:
                raise RuntimeError("the process dies right after its commit")

            event.listen(session.sync_session, "after_commit", crash, once=True)
        return {"name": thing.name}

    @app.post("/excluded", status_code=status.HTTP_201_CREATED)
    async def excluded(thing: Thing, user: CurrentUser) -> dict[str, Any]:
        runs[thing.name] += 1
        return {"name": thing.name}


@pytest.fixture(scope="module")
async def app(mysql_server: MysqlServer, test_issuer: TestIssuer) -> AsyncIterator[FastAPI]:
    async with temporary_database(mysql_server, "common_idem") as url:
        engine = create_engine(url, pool_size=1)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        await engine.dispose()
        settings = BaseServiceSettings(
            service_name="idempotency-test",
            environment="test",
            database_url=SecretStr(url),
            auth_jwks_url=test_issuer.jwks_url,
            auth_issuer=ISSUER,
            max_body_bytes=10_000,
        )
        application = create_service_app(
            settings,
            title="Idempotency test",
            description="",
            configure=configure,
            idempotency_model=IdempotencyKey,
            idempotency_excluded_paths={"/excluded"},
        )
        async with application.router.lifespan_context(application):
            yield application


@pytest.fixture
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return factory


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # A raising endpoint is answered with 500 by the app, as a server would send it.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def user() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def name() -> str:
    return uuid.uuid4().hex


def keyed(test_issuer: TestIssuer, user: uuid.UUID, key: str) -> dict[str, str]:
    return {**test_issuer.headers(user), "Idempotency-Key": key}


async def stored_keys(
    sessionmaker: async_sessionmaker[AsyncSession], key: str
) -> list[IdempotencyKey]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(IdempotencyKey).where(IdempotencyKey.key == key.encode())
        )
        return list(rows.all())


async def test_a_repeated_request_gets_the_first_answer_without_running_again(
    api: httpx.AsyncClient, test_issuer: TestIssuer, user: uuid.UUID, name: str
) -> None:
    headers = keyed(test_issuer, user, "order-1")

    first = await api.post("/things", json={"name": name}, headers=headers)
    again = await api.post("/things", json={"name": name}, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert runs[name] == 1


async def test_the_same_key_with_another_body_or_path_is_refused(
    api: httpx.AsyncClient, test_issuer: TestIssuer, user: uuid.UUID, name: str
) -> None:
    headers = keyed(test_issuer, user, "order-2")
    await api.post("/things", json={"name": name}, headers=headers)

    other_body = await api.post("/things", json={"name": name + "-changed"}, headers=headers)
    other_path = await api.post("/refused", json={"name": name}, headers=headers)
    other_query = await api.post("/things?x=1", json={"name": name}, headers=headers)

    assert other_body.status_code == 422
    assert other_body.headers["content-type"] == "application/problem+json"
    assert other_body.json()["errors"] == [
        {
            "field": "Idempotency-Key",
            "in": "header",
            "message": "was already used with another request (method, path or body)",
        }
    ]
    assert other_path.status_code == other_query.status_code == 422
    assert runs[name] == 1
    assert runs[name + "-changed"] == 0


async def test_a_second_request_while_the_first_runs_is_told_to_wait(
    api: httpx.AsyncClient, test_issuer: TestIssuer, user: uuid.UUID, name: str
) -> None:
    headers = keyed(test_issuer, user, "order-3")
    started[name], let_go[name] = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(api.post("/slow", json={"name": name}, headers=headers))
    await asyncio.wait_for(started[name].wait(), timeout=10)

    meanwhile = await api.post("/slow", json={"name": name}, headers=headers)
    let_go[name].set()
    first_answer = await first
    afterwards = await api.post("/slow", json={"name": name}, headers=headers)

    assert meanwhile.status_code == 409
    assert meanwhile.headers["content-type"] == "application/problem+json"
    assert first_answer.status_code == 201
    assert afterwards.status_code == 201
    assert afterwards.headers["idempotent-replayed"] == "true"
    assert runs[name] == 1


async def test_the_same_key_from_two_users_never_meets(
    api: httpx.AsyncClient, test_issuer: TestIssuer, name: str
) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()

    for_alice = await api.post(
        "/things", json={"name": name}, headers=keyed(test_issuer, alice, "k")
    )
    for_bob = await api.post("/things", json={"name": name}, headers=keyed(test_issuer, bob, "k"))

    assert for_alice.status_code == for_bob.status_code == 201
    assert for_alice.json()["owner"] == str(alice)
    assert for_bob.json()["owner"] == str(bob)
    assert "idempotent-replayed" not in for_bob.headers
    assert runs[name] == 2


async def test_keys_differing_only_in_case_are_different_keys(
    api: httpx.AsyncClient, test_issuer: TestIssuer, user: uuid.UUID, name: str
) -> None:
    lower = await api.post("/things", json={"name": name}, headers=keyed(test_issuer, user, "abc"))
    upper = await api.post("/things", json={"name": name}, headers=keyed(test_issuer, user, "ABC"))

    assert lower.status_code == upper.status_code == 201
    assert runs[name] == 2


async def test_without_the_header_a_request_runs_every_time(
    api: httpx.AsyncClient, test_issuer: TestIssuer, user: uuid.UUID, name: str
) -> None:
    headers = test_issuer.headers(user)

    first = await api.post("/things", json={"name": name}, headers=headers)
    second = await api.post("/things", json={"name": name}, headers=headers)

    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert runs[name] == 2


async def test_an_excluded_path_runs_every_time_even_with_a_key(
    api: httpx.AsyncClient, test_issuer: TestIssuer, user: uuid.UUID, name: str
) -> None:
    headers = keyed(test_issuer, user, f"excluded-{name}")

    await api.post("/excluded", json={"name": name}, headers=headers)
    again = await api.post("/excluded", json={"name": name}, headers=headers)

    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert runs[name] == 2


@pytest.mark.parametrize("failure", ["answer", "raise"])
async def test_a_server_error_frees_the_key_for_a_retry(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    user: uuid.UUID,
    failure: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    name = f"{failure}-{uuid.uuid4().hex}"
    headers = keyed(test_issuer, user, name)

    failed = await api.post("/flaky", json={"name": name}, headers=headers)
    assert await stored_keys(sessionmaker, name) == []
    retried = await api.post("/flaky", json={"name": name}, headers=headers)

    assert failed.status_code == (503 if failure == "answer" else 500)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert runs[name] == 2


async def test_a_refusal_is_kept_and_repeated_like_a_success(
    api: httpx.AsyncClient, test_issuer: TestIssuer, user: uuid.UUID, name: str
) -> None:
    headers = keyed(test_issuer, user, "refused")

    first = await api.post("/refused", json={"name": name}, headers=headers)
    again = await api.post("/refused", json={"name": name}, headers=headers)

    assert first.status_code == again.status_code == 409
    assert again.json() == first.json()
    assert again.headers["content-type"] == "application/problem+json"
    assert again.headers["idempotent-replayed"] == "true"
    assert runs[name] == 1


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_a_request_without_a_valid_token_passes_through_to_the_401(
    api: httpx.AsyncClient,
    token: str | None,
    name: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = {"Idempotency-Key": name}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"

    refused = await api.post("/things", json={"name": name}, headers=headers)

    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert await stored_keys(sessionmaker, name) == []
    assert runs[name] == 0


@pytest.mark.parametrize("key", [b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"])
async def test_a_malformed_key_is_refused(
    api: httpx.AsyncClient, test_issuer: TestIssuer, user: uuid.UUID, name: str, key: bytes
) -> None:
    token = f"Bearer {test_issuer.token(user)}".encode()
    headers = [(b"authorization", token), (b"idempotency-key", key)]

    refused = await api.post("/things", json={"name": name}, headers=headers)

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "Idempotency-Key"
    assert runs[name] == 0


async def test_the_longest_key_is_accepted(
    api: httpx.AsyncClient, test_issuer: TestIssuer, user: uuid.UUID, name: str
) -> None:
    headers = keyed(test_issuer, user, "k" + " ~" * 127)

    first = await api.post("/things", json={"name": name}, headers=headers)
    again = await api.post("/things", json={"name": name}, headers=headers)

    assert first.status_code == again.status_code == 201
    assert runs[name] == 1


async def test_an_oversized_body_is_refused_before_a_key_is_claimed(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    user: uuid.UUID,
    name: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(20):
            yield b"x" * 1000
        yield b'"}'

    refused = await api.post("/things", content=streamed(), headers=keyed(test_issuer, user, name))

    assert refused.status_code == 413
    assert await stored_keys(sessionmaker, name) == []


async def test_a_key_left_in_progress_by_a_dead_request_is_taken_over_after_its_lock(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    user: uuid.UUID,
    name: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = keyed(test_issuer, user, name)
    await api.post("/things", json={"name": name}, headers=headers)

    async def leave_in_progress(locked_for: timedelta) -> None:
        """As if the process had died after claiming the key, before storing the answer."""
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.owner_id == user, IdempotencyKey.key == name.encode())
                .values(state=KeyState.IN_PROGRESS, locked_until=utcnow() + locked_for)
            )

    await leave_in_progress(timedelta(seconds=30))
    still_locked = await api.post("/things", json={"name": name}, headers=headers)
    await leave_in_progress(timedelta(seconds=-1))
    taken_over = await api.post("/things", json={"name": name}, headers=headers)
    replayed = await api.post("/things", json={"name": name}, headers=headers)

    assert still_locked.status_code == 409
    assert taken_over.status_code == 201
    assert "idempotent-replayed" not in taken_over.headers
    assert replayed.json() == taken_over.json()
    assert runs[name] == 2


async def test_a_request_that_dies_after_its_commit_is_not_run_again_by_its_retry(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    user: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The effects and the kept answer commit together: a retry after a crash past the commit
    is answered from the kept answer, never run a second time (no second record)."""
    name = f"crash-{uuid.uuid4().hex}"
    headers = keyed(test_issuer, user, name)

    crashed = await api.post("/records", json={"name": name}, headers=headers)
    retried = await api.post("/records", json={"name": name}, headers=headers)

    assert crashed.status_code == 500
    assert retried.status_code == 201
    assert retried.headers["idempotent-replayed"] == "true"
    assert runs[name] == 1
    async with sessionmaker() as session:
        kept = await session.scalar(select(func.count()).where(Record.name == name))
    assert kept == 1


async def test_a_keyed_request_commits_its_effects_with_its_answer(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    user: uuid.UUID,
    name: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = keyed(test_issuer, user, name)
    first = await api.post("/records", json={"name": name}, headers=headers)
    again = await api.post("/records", json={"name": name}, headers=headers)
    unkeyed = await api.post("/records", json={"name": name}, headers=test_issuer.headers(user))

    assert (first.status_code, again.status_code, unkeyed.status_code) == (201, 201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert [key.state for key in await stored_keys(sessionmaker, name)] == [KeyState.DONE]
    async with sessionmaker() as session:
        kept = await session.scalar(select(func.count()).where(Record.name == name))
    assert kept == 2  # the keyed one once, the unkeyed one


async def test_an_expired_key_means_a_new_request(
    api: httpx.AsyncClient,
    test_issuer: TestIssuer,
    user: uuid.UUID,
    name: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    headers = keyed(test_issuer, user, name)
    await api.post("/things", json={"name": name}, headers=headers)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == name.encode())
            .values(created_at=utcnow() - KEEP_FOR - timedelta(seconds=1))
        )

    later = await api.post("/things", json={"name": name + "-other"}, headers=headers)

    assert later.status_code == 201
    assert runs[name + "-other"] == 1


async def test_purge_deletes_only_keys_older_than_a_day(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    owner, now = uuid.uuid4(), utcnow()
    ages = {b"old": KEEP_FOR + timedelta(minutes=1), b"fresh": KEEP_FOR - timedelta(minutes=1)}
    async with sessionmaker() as session, session.begin():
        for key, age in ages.items():
            session.add(
                IdempotencyKey(
                    owner_id=owner,
                    key=key,
                    fingerprint=bytes(32),
                    state=KeyState.DONE,
                    created_at=now - age,
                    locked_until=now - age,
                )
            )

    purged = await purge_expired_keys(sessionmaker, IdempotencyKey, batch_size=1)

    async with sessionmaker() as session:
        left = await session.scalars(
            select(IdempotencyKey.key).where(IdempotencyKey.owner_id == owner)
        )
        assert left.all() == [b"fresh"]
    assert purged >= 1


async def test_the_openapi_document_shows_the_header_on_keyed_posts(app: FastAPI) -> None:
    app.openapi()  # built twice: the header is still there once
    document = app.openapi()

    create = document["paths"]["/things"]["post"]
    headers = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
    assert len(headers) == 1
    assert headers[0]["in"] == "header"
    assert headers[0]["required"] is False
    assert "409" in create["responses"]
    assert "Idempotent-Replayed" in create["responses"]["201"]["headers"]
    excluded = document["paths"]["/excluded"]["post"]
    assert all(p["name"] != "Idempotency-Key" for p in excluded.get("parameters", []))


def test_the_fingerprint_is_keyed_so_a_card_in_a_body_cannot_be_guessed_from_it() -> None:
    body = b'{"card": {"number": "1234567812345678"}}'

    ours = request_fingerprint(b"secret", "POST", "/invoice", b"", body)

    assert ours == request_fingerprint(b"secret", "POST", "/invoice", b"", body)
    assert ours != request_fingerprint(b"another", "POST", "/invoice", b"", body)
    assert hashlib.sha256(body).digest() != ours
