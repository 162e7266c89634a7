"""Platform tokens: their shape, refresh rotation and reuse, logout, forged tokens, and key
rotation that signs nobody out."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.auth import JwksCache, TokenVerifier
from common.errors import Unauthorized
from common.outbox import utcnow
from user import service
from user.config import UserSettings
from user.crypto import sha256_hex
from user.models import RefreshToken, SigningKey

from .conftest import BASE_URL
from .helpers import assert_problem, bearer, sign_in


@pytest.fixture
async def verifier(app: FastAPI, settings: UserSettings) -> AsyncIterator[TokenVerifier]:
    """libs/common's verifier, as another service runs it, reading this service's JWKS."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        yield TokenVerifier(
            JwksCache(f"{BASE_URL}/.well-known/jwks.json", http),
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
        )


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, claims, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(claims)


async def _rotate(app: FastAPI, settings: UserSettings) -> str | None:
    async with app.state.sessionmaker() as session, session.begin():
        return await service.rotate_signing_keys(session, settings, app.state.secret_box)


async def _jwks_kids(browser: httpx.AsyncClient) -> list[str]:
    response = await browser.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return [key["kid"] for key in response.json()["keys"]]


async def _refresh(browser: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await browser.post("/api/auth/refresh", json={"refresh_token": refresh_token})


async def _spent_seconds_ago(
    sessionmaker: async_sessionmaker[AsyncSession], refresh_token: str, seconds: int
) -> None:
    """Move a spent token's exchange into the past, as if that much time had gone by."""
    async with sessionmaker() as session, session.begin():
        row = await session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(refresh_token))
        )
        assert row is not None
        assert row.spent_at is not None
        row.spent_at -= timedelta(seconds=seconds)


async def _token_rows(
    sessionmaker: async_sessionmaker[AsyncSession], *refresh_tokens: str
) -> list[RefreshToken]:
    async with sessionmaker() as session:
        hashes = [sha256_hex(token) for token in refresh_tokens]
        rows = await session.scalars(
            select(RefreshToken).where(RefreshToken.token_hash.in_(hashes))
        )
        return list(rows)


# --- shape ------------------------------------------------------------------------------------


async def test_an_access_token_is_an_rs256_jwt_that_libs_common_verifies(
    browser: httpx.AsyncClient, subject: str, verifier: TokenVerifier, settings: UserSettings
) -> None:
    tokens = await sign_in(browser, subject)

    header, claims = _segments(tokens["access_token"])
    verified = await verifier.verify(tokens["access_token"])

    assert header["alg"] == "RS256"
    assert header["kid"] in await _jwks_kids(browser)
    assert claims["iss"] == settings.auth_issuer == "ledgerline"
    assert claims["aud"] == settings.auth_audience == "ledgerline"
    assert claims["exp"] - claims["iat"] == 900
    assert str(verified.id) == tokens["user_id"] == claims["sub"]


async def test_the_jwks_publishes_public_parts_only(browser: httpx.AsyncClient) -> None:
    await sign_in(browser, f"jwks-{uuid.uuid4().hex[:6]}")

    keys = (await browser.get("/.well-known/jwks.json")).json()["keys"]

    assert keys
    for key in keys:
        assert key["kty"] == "RSA"
        assert key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


async def test_signing_keys_are_stored_encrypted(
    sessionmaker: async_sessionmaker[AsyncSession], browser: httpx.AsyncClient
) -> None:
    await sign_in(browser, f"keys-{uuid.uuid4().hex[:6]}")

    async with sessionmaker() as session:
        sealed = list(await session.scalars(select(SigningKey.private_key_encrypted)))

    assert sealed
    for value in sealed:
        assert b"PRIVATE KEY" not in value
        assert b"-----BEGIN" not in value


# --- refresh and logout -----------------------------------------------------------------------


async def test_a_refresh_token_works_once_and_is_replaced(
    browser: httpx.AsyncClient, subject: str
) -> None:
    first = await sign_in(browser, subject)

    second = await browser.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})

    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["user_id"] == first["user_id"]
    assert (await browser.get("/api/users/me", headers=bearer(body))).status_code == 200


async def test_reusing_a_spent_refresh_token_after_the_reuse_interval_revokes_the_sign_in(
    browser: httpx.AsyncClient,
    subject: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: UserSettings,
) -> None:
    first = await sign_in(browser, subject)
    other_sign_in = await sign_in(browser, subject)
    rotated = await _refresh(browser, first["refresh_token"])
    latest = rotated.json()["refresh_token"]
    await _spent_seconds_ago(sessionmaker, first["refresh_token"], settings.refresh_reuse_seconds)

    reused = await _refresh(browser, first["refresh_token"])

    assert_problem(reused, 401)
    assert_problem(await _refresh(browser, latest), 401)
    family = await _token_rows(sessionmaker, first["refresh_token"], latest)
    assert len(family) == 2
    assert all(row.revoked_at is not None for row in family)
    # Another sign-in of the same user is another family, untouched.
    untouched = await _refresh(browser, other_sign_in["refresh_token"])
    assert untouched.status_code == 200


async def test_logout_revokes_the_refresh_token(browser: httpx.AsyncClient, subject: str) -> None:
    tokens = await sign_in(browser, subject)

    out = await browser.post("/api/auth/logout", json={"refresh_token": tokens["refresh_token"]})

    assert out.status_code == 204
    assert_problem(
        await browser.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        401,
    )


async def test_logout_with_an_unknown_token_says_nothing(browser: httpx.AsyncClient) -> None:
    out = await browser.post("/api/auth/logout", json={"refresh_token": "never-issued"})

    assert out.status_code == 204


async def test_logout_all_revokes_every_sign_in_of_the_user_and_no_one_elses(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    this_browser = await sign_in(browser, subject)
    other_browser = await sign_in(browser, subject)
    rotated = await _refresh(browser, other_browser["refresh_token"])
    assert rotated.status_code == 200
    someone_else = await sign_in(browser, f"{subject}-other")

    out = await browser.post("/api/auth/logout-all", headers=bearer(this_browser))

    assert out.status_code == 204
    cleared = out.headers["set-cookie"]
    assert cleared.startswith("ledgerline_refresh=")
    assert "Path=/api/auth" in cleared
    assert "Max-Age=0" in cleared
    assert_problem(await _refresh(browser, this_browser["refresh_token"]), 401)
    assert_problem(await _refresh(browser, rotated.json()["refresh_token"]), 401)
    rows = await _token_rows(
        sessionmaker, this_browser["refresh_token"], rotated.json()["refresh_token"]
    )
    assert len(rows) == 2
    assert all(row.revoked_at is not None for row in rows)
    # Another user's sign-in is untouched.
    assert (await _refresh(browser, someone_else["refresh_token"])).status_code == 200
    # The access token already issued stays valid until it expires.
    assert (await browser.get("/api/users/me", headers=bearer(this_browser))).status_code == 200


async def test_logout_all_needs_an_access_token(browser: httpx.AsyncClient, subject: str) -> None:
    tokens = await sign_in(browser, subject)

    assert_problem(await browser.post("/api/auth/logout-all"), 401)
    assert_problem(
        await browser.post("/api/auth/logout-all", headers={"Authorization": "Bearer forged"}),
        401,
    )
    # A refresh token is not an access token.
    assert_problem(
        await browser.post(
            "/api/auth/logout-all", headers={"Authorization": f"Bearer {tokens['refresh_token']}"}
        ),
        401,
    )
    assert (await _refresh(browser, tokens["refresh_token"])).status_code == 200


async def test_an_expired_refresh_token_is_refused(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    tokens = await sign_in(browser, subject)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == sha256_hex(tokens["refresh_token"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )

    refused = await browser.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )

    assert_problem(refused, 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"refresh_token": ""}, "refresh_token"),
        ({"refresh_token": "x" * 201}, "refresh_token"),
        ({"refresh_token": 42}, "refresh_token"),
        ({"refresh_token": "abc", "user_id": "someone"}, "user_id"),
    ],
)
async def test_a_malformed_refresh_request_names_the_field(
    browser: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await browser.post("/api/auth/refresh", json=body)

    problem = assert_problem(response, 422)
    assert field in [error["field"] for error in problem["errors"]]


async def test_a_refresh_without_any_token_is_401(browser: httpx.AsyncClient) -> None:
    assert_problem(await browser.post("/api/auth/refresh"), 401)


# --- the reuse interval ---------------------------------------------------------------------


@pytest.fixture
def reuse_seconds(app: FastAPI, settings: UserSettings) -> Iterator[Callable[[int], None]]:
    """Run the app with another reuse interval for one test."""

    def set_to(seconds: int) -> None:
        app.state.settings = settings.model_copy(update={"refresh_reuse_seconds": seconds})

    # Set back by hand: pytest's monkeypatch cannot restore an attribute of Starlette's State.
    try:
        yield set_to
    finally:
        app.state.settings = settings


async def test_a_token_presented_again_within_the_interval_gets_the_same_pair(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await sign_in(browser, subject)

    one = await _refresh(browser, first["refresh_token"])
    two = await _refresh(browser, first["refresh_token"])

    assert one.status_code == two.status_code == 200, two.text
    assert two.json()["refresh_token"] == one.json()["refresh_token"]
    # The same claims signed by the same key: the very same access token.
    assert two.json()["access_token"] == one.json()["access_token"]
    assert 0 < two.json()["expires_in"] <= one.json()["expires_in"]
    assert (await browser.get("/api/users/me", headers=bearer(two.json()))).status_code == 200
    # The sign-in goes on: nothing revoked, and the shared successor still rotates.
    rows = await _token_rows(sessionmaker, first["refresh_token"], one.json()["refresh_token"])
    assert [row.revoked_at for row in rows] == [None, None]
    assert (await _refresh(browser, one.json()["refresh_token"])).status_code == 200


async def test_the_interval_counts_from_the_first_exchange(
    browser: httpx.AsyncClient,
    subject: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: UserSettings,
) -> None:
    first = await sign_in(browser, subject)
    one = await _refresh(browser, first["refresh_token"])
    await _spent_seconds_ago(
        sessionmaker, first["refresh_token"], settings.refresh_reuse_seconds - 2
    )
    assert (await _refresh(browser, first["refresh_token"])).status_code == 200

    await _spent_seconds_ago(sessionmaker, first["refresh_token"], 2)

    assert_problem(await _refresh(browser, first["refresh_token"]), 401)
    assert_problem(await _refresh(browser, one.json()["refresh_token"]), 401)


async def test_a_token_whose_successor_was_exchanged_revokes_even_within_the_interval(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await sign_in(browser, subject)
    second = (await _refresh(browser, first["refresh_token"])).json()
    third = (await _refresh(browser, second["refresh_token"])).json()

    reused = await _refresh(browser, first["refresh_token"])

    assert_problem(reused, 401)
    assert_problem(await _refresh(browser, third["refresh_token"]), 401)
    rows = await _token_rows(sessionmaker, first["refresh_token"], third["refresh_token"])
    assert all(row.revoked_at is not None for row in rows)


async def test_two_simultaneous_refreshes_with_one_token_get_the_same_pair(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await sign_in(browser, subject)
    # Hold the token's row lock so both requests are inside the database at once, waiting
    # for it; once it is released one exchanges the token and the other finds it spent.
    async with sessionmaker() as session, session.begin():
        await session.scalar(
            select(RefreshToken)
            .where(RefreshToken.token_hash == sha256_hex(first["refresh_token"]))
            .with_for_update()
        )
        racing = [asyncio.create_task(_refresh(browser, first["refresh_token"])) for _ in range(2)]
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in racing)
    one, two = await asyncio.gather(*racing)

    assert one.status_code == two.status_code == 200, (one.text, two.text)
    same = ("refresh_token", "access_token", "user_id")
    assert {k: one.json()[k] for k in same} == {k: two.json()[k] for k in same}
    follow_up = await _refresh(browser, one.json()["refresh_token"])
    assert follow_up.status_code == 200


async def test_with_the_interval_off_any_reuse_revokes(
    browser: httpx.AsyncClient, subject: str, reuse_seconds: Callable[[int], None]
) -> None:
    reuse_seconds(0)
    first = await sign_in(browser, subject)
    rotated = await _refresh(browser, first["refresh_token"])

    assert_problem(await _refresh(browser, first["refresh_token"]), 401)
    assert_problem(await _refresh(browser, rotated.json()["refresh_token"]), 401)


# --- forged access tokens ---------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"
    )


async def _forgeries(app: FastAPI, settings: UserSettings, user_id: str) -> dict[str, str]:
    """Tokens for a real user that must all be refused, most of them signed with our own key."""
    async with app.state.sessionmaker() as session:
        kid, key = await service.signing_key(session, settings, app.state.secret_box)
    now = int(time.time())
    claims = {
        "iss": "ledgerline",
        "aud": "ledgerline",
        "sub": user_id,
        "iat": now,
        "exp": now + 600,
    }

    def ours(**overrides: Any) -> str:
        return jwt.encode({"alg": "RS256", "kid": kid}, {**claims, **overrides}, key)

    hs256_header = {"alg": "HS256", "kid": kid, "typ": "JWT"}
    signing_input = _compact(hs256_header, claims).rsplit(".", 1)[0]
    public_pem = key.as_pem(private=False)
    stranger = RSAKey.generate_key(2048, parameters={"kid": kid})
    return {
        "alg none": _compact({"alg": "none", "kid": kid}, claims),
        "HS256 keyed with our public key": signing_input
        + "."
        + _b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()),
        "a key we never published": jwt.encode(
            {"alg": "RS256", "kid": "not-published"},
            claims,
            RSAKey.generate_key(2048, parameters={"kid": "not-published"}),
        ),
        "another key under our kid": jwt.encode({"alg": "RS256", "kid": kid}, claims, stranger),
        "wrong issuer": ours(iss="https://evil.example"),
        "wrong audience": ours(aud="another-api"),
        "expired": ours(iat=now - 1000, exp=now - 100),
        "subject is not a user id": ours(sub="admin"),
        "a user that does not exist": ours(sub=str(uuid.uuid4())),
    }


FORGERIES = [
    "alg none",
    "HS256 keyed with our public key",
    "a key we never published",
    "another key under our kid",
    "wrong issuer",
    "wrong audience",
    "expired",
    "subject is not a user id",
    "a user that does not exist",
]


@pytest.mark.parametrize("name", FORGERIES)
async def test_a_forged_access_token_is_refused_and_changes_nothing(
    browser: httpx.AsyncClient, app: FastAPI, settings: UserSettings, subject: str, name: str
) -> None:
    tokens = await sign_in(browser, subject)
    forgeries = await _forgeries(app, settings, tokens["user_id"])
    assert sorted(forgeries) == sorted(FORGERIES)
    forged = {"Authorization": f"Bearer {forgeries[name]}"}

    read = await browser.get("/api/users/me", headers=forged)
    change = await browser.patch("/api/users/me", json={"name": "Mallory"}, headers=forged)
    delete = await browser.delete("/api/users/me", headers=forged)

    for response in (read, change, delete):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    me = await browser.get("/api/users/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["name"] is None


async def test_a_request_without_a_token_is_401(browser: httpx.AsyncClient) -> None:
    assert_problem(await browser.get("/api/users/me"), 401)
    assert_problem(await browser.get("/api/users/me", headers={"Authorization": "Basic abc"}), 401)


# --- key rotation -----------------------------------------------------------------------------


async def test_rotation_signs_new_tokens_with_the_new_key_and_keeps_old_ones_valid(
    browser: httpx.AsyncClient,
    app: FastAPI,
    settings: UserSettings,
    subject: str,
    verifier: TokenVerifier,
) -> None:
    before = await sign_in(browser, subject)
    old_kid = _segments(before["access_token"])[0]["kid"]
    published_before = await _jwks_kids(browser)

    now_signing = await _rotate(app, settings)
    after = (
        await browser.post("/api/auth/refresh", json={"refresh_token": before["refresh_token"]})
    ).json()

    new_kid = _segments(after["access_token"])[0]["kid"]
    assert new_kid == now_signing != old_kid
    # The key that signs now was published before it signed: no cached JWKS misses it.
    assert new_kid in published_before
    published = await _jwks_kids(browser)
    assert old_kid in published
    assert new_kid in published
    for tokens in (before, after):
        assert (await browser.get("/api/users/me", headers=bearer(tokens))).status_code == 200
        assert str((await verifier.verify(tokens["access_token"])).id) == before["user_id"]


async def test_keys_older_than_the_previous_one_go_once_their_tokens_have_expired(
    browser: httpx.AsyncClient,
    app: FastAPI,
    settings: UserSettings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await sign_in(browser, f"rotate-{uuid.uuid4().hex[:6]}")
    await _rotate(app, settings)
    await _rotate(app, settings)
    assert len(await _jwks_kids(browser)) >= 4, "young keys stay while their tokens may live"
    # An hour passes: every token signed by a retired key has expired.
    async with sessionmaker() as session, session.begin():
        for key in await session.scalars(select(SigningKey)):
            key.created_at -= timedelta(hours=1)

    signing = await _rotate(app, settings)

    published = await _jwks_kids(browser)
    assert len(published) == 3, "next, current and previous"
    assert published[1] == signing


async def test_a_withdrawn_key_leaves_the_jwks_and_its_remembered_tokens_are_refused(
    browser: httpx.AsyncClient, app: FastAPI, settings: UserSettings
) -> None:
    tokens = await sign_in(browser, f"withdraw-{uuid.uuid4().hex[:6]}")
    kid = _segments(tokens["access_token"])[0]["kid"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        # Another service's verifier, its bounds shrunk from seconds to fractions of one.
        cache = JwksCache(
            f"{BASE_URL}/.well-known/jwks.json",
            http,
            max_age_seconds=0.2,
            refresh_floor_seconds=0.2,
            stale_for_seconds=0.2,
        )
        verifier = TokenVerifier(cache, settings.auth_issuer, settings.auth_audience)
        await verifier.verify(tokens["access_token"])

        async with app.state.sessionmaker() as session, session.begin():
            signing = await service.withdraw_signing_key(
                session, settings, app.state.secret_box, kid
            )
        await asyncio.sleep(0.5)

        assert kid not in await _jwks_kids(browser)
        with pytest.raises(Unauthorized):
            await verifier.verify(tokens["access_token"])
        # Signing goes on with a fresh key, which the same verifier fetches and accepts.
        after = (await _refresh(browser, tokens["refresh_token"])).json()
        assert _segments(after["access_token"])[0]["kid"] == signing != kid
        assert str((await verifier.verify(after["access_token"])).id) == tokens["user_id"]


async def test_withdrawing_an_unknown_key_changes_nothing(
    app: FastAPI, settings: UserSettings, browser: httpx.AsyncClient
) -> None:
    await sign_in(browser, f"withdraw-{uuid.uuid4().hex[:6]}")
    published = await _jwks_kids(browser)

    with pytest.raises(service.SigningKeyNotFound):
        async with app.state.sessionmaker() as session, session.begin():
            await service.withdraw_signing_key(
                session, settings, app.state.secret_box, "no-such-kid"
            )

    assert await _jwks_kids(browser) == published


async def test_a_scheduled_rotation_waits_until_the_key_is_due(
    app: FastAPI, settings: UserSettings, browser: httpx.AsyncClient
) -> None:
    await sign_in(browser, f"due-{uuid.uuid4().hex[:6]}")
    async with app.state.sessionmaker() as session, session.begin():
        not_due = await service.rotate_signing_keys(
            session, settings, app.state.secret_box, only_if_older_than=timedelta(days=30)
        )
        due = await service.rotate_signing_keys(
            session, settings, app.state.secret_box, only_if_older_than=timedelta(0)
        )

    assert not_due is None
    assert due is not None


async def test_the_signing_key_is_imported_once_and_forgotten_once_withdrawn(
    app: FastAPI, settings: UserSettings, browser: httpx.AsyncClient
) -> None:
    """Importing an RSA private key costs tens to hundreds of milliseconds of CPU: done for
    every token, it held every sign-in and refresh back under load."""
    await sign_in(browser, f"import-{uuid.uuid4().hex[:6]}")
    box = app.state.secret_box
    async with app.state.sessionmaker() as session:
        kid, first = await service.signing_key(session, settings, box)
        again_kid, again = await service.signing_key(session, settings, box)

    assert (again_kid, again) == (kid, first)
    assert again is first, "the same imported key, not imported again"

    async with app.state.sessionmaker() as session, session.begin():
        signing = await service.withdraw_signing_key(session, settings, box, kid)
    async with app.state.sessionmaker() as session:
        new_kid, new_key = await service.signing_key(session, settings, box)

    assert new_kid == signing != kid
    assert new_key is not first
    assert kid not in service._imported_keys, "a withdrawn private key leaves memory"
