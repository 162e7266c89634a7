"""Sign-in through real OpenID Connect providers, the way a browser or a script walks it."""

import logging
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.outbox import utcnow
from user.crypto import sha256_hex
from user.models import Identity, LoginState, User

from .conftest import APP_ORIGIN, BASE_URL, CLIENT_SECRET
from .helpers import assert_problem, bearer, consent, outbox_events, sign_in, start_login


async def test_a_first_sign_in_creates_the_user_and_announces_it(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    tokens = await sign_in(browser, subject)

    me = await browser.get("/api/users/me", headers=bearer(tokens))

    assert me.status_code == 200, me.text
    assert me.json()["id"] == tokens["user_id"]
    assert me.json()["email"] == subject
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_token"]
    [registered] = await outbox_events(sessionmaker, tokens["user_id"])
    assert registered.type == "user.registered"
    assert registered.subject == tokens["user_id"]
    assert registered.data == {
        "user_id": tokens["user_id"],
        "email": subject,
        "name": None,
        "company_name": None,
        "address": None,
    }


async def test_a_later_sign_in_finds_the_same_user(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await sign_in(browser, subject)

    second = await sign_in(browser, subject)

    assert second["user_id"] == first["user_id"]
    assert second["refresh_token"] != first["refresh_token"]
    events = await outbox_events(sessionmaker, first["user_id"])
    assert [e.type for e in events] == ["user.registered"]


async def test_the_authorization_request_carries_state_nonce_and_an_s256_challenge(
    browser: httpx.AsyncClient,
) -> None:
    authorize_url = await start_login(browser)

    query = {name: values[0] for name, values in parse_qs(urlsplit(authorize_url).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "ledgerline-mock"
    assert query["redirect_uri"] == f"{BASE_URL}/api/auth/mock/callback"
    assert query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43
    assert len(query["nonce"]) >= 43


async def test_a_browser_gets_its_refresh_token_in_a_cookie_and_no_token_in_a_url(
    browser: httpx.AsyncClient, subject: str
) -> None:
    authorize_url = await start_login(browser, redirect_uri=f"{APP_ORIGIN}/signed-in")
    callback_url = await consent(browser, authorize_url, subject)

    back = await browser.get(callback_url)

    assert back.status_code == 302
    assert back.headers["location"] == f"{APP_ORIGIN}/signed-in"
    refresh_cookie = next(
        c for c in back.headers.get_list("set-cookie") if c.startswith("ledgerline_refresh=")
    )
    assert "HttpOnly" in refresh_cookie
    assert "SameSite=strict" in refresh_cookie
    assert "Path=/api/auth" in refresh_cookie
    assert back.content == b""
    # The app then asks for an access token with the cookie alone.
    tokens = await browser.post("/api/auth/refresh")
    assert tokens.status_code == 200, tokens.text
    assert "refresh_token" not in tokens.json()
    assert tokens.headers["cache-control"] == "no-store"
    me = await browser.get("/api/users/me", headers=bearer(tokens.json()))
    assert me.json()["email"] == subject


async def test_the_same_email_at_another_provider_is_a_separate_account(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    at_mock = await sign_in(browser, subject, provider="mock")

    at_other = await sign_in(browser, subject, provider="other")

    assert at_other["user_id"] != at_mock["user_id"]
    for tokens in (at_mock, at_other):
        me = await browser.get("/api/users/me", headers=bearer(tokens))
        assert me.json()["email"] == subject
    async with sessionmaker() as session:
        issuers = set(
            await session.scalars(
                select(Identity.issuer).where(
                    Identity.email == subject, Identity.subject == subject
                )
            )
        )
    assert len(issuers) == 2


async def test_the_providers_are_listed_for_the_login_page(browser: httpx.AsyncClient) -> None:
    response = await browser.get("/api/auth/providers")

    assert response.json() == {"providers": ["mock", "other"]}


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/steal",
        "http://app.test.evil.example/",
        "javascript:alert(1)",
        "//evil.example",
        "http://user@app.test/",
        "http://user:pass@app.test/signed-in",
        "http://@app.test/",
        "http://app.test/signed-in#access_token",
        "http://app.test:8080/signed-in",
        "http://app.test\\@evil.example/",
        "not a url",
    ],
)
async def test_login_sends_browsers_back_only_to_configured_origins(
    browser: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    redirect_uri: str,
) -> None:
    before = await _login_states(sessionmaker)

    response = await browser.get("/api/auth/mock/login", params={"redirect_uri": redirect_uri})

    body = assert_problem(response, 422)
    assert body["errors"][0]["field"] == "redirect_uri"
    assert await _login_states(sessionmaker) == before


async def test_an_unknown_provider_is_404(browser: httpx.AsyncClient) -> None:
    assert_problem(await browser.get("/api/auth/nowhere/login"), 404)
    assert_problem(await browser.get("/api/auth/nowhere/callback?code=x&state=y"), 404)


async def test_a_callback_opened_in_another_browser_is_refused(
    browser: httpx.AsyncClient, app: object, subject: str
) -> None:
    callback_url = await consent(browser, await start_login(browser), subject)
    async with httpx.AsyncClient(
        mounts={BASE_URL: httpx.ASGITransport(app=app)},  # type: ignore[arg-type]
        base_url=BASE_URL,
    ) as other_browser:
        refused = await other_browser.get(callback_url)

    body = assert_problem(refused, 400)
    assert body["errors"][0]["field"] == "state"
    # The browser that started the sign-in can still finish it.
    finished = await browser.get(callback_url)
    assert finished.status_code == 200, finished.text


async def test_a_finished_sign_in_cannot_be_replayed(
    browser: httpx.AsyncClient, subject: str
) -> None:
    authorize_url = await start_login(browser)
    callback_url = await consent(browser, authorize_url, subject)
    state = parse_qs(urlsplit(callback_url).query)["state"][0]
    assert (await browser.get(callback_url)).status_code == 200

    browser.cookies.set("ledgerline_login", state, domain="user.test", path="/api/auth")
    replayed = await browser.get(callback_url)

    assert_problem(replayed, 400)


async def test_an_expired_sign_in_is_refused(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    callback_url = await consent(browser, await start_login(browser), subject)
    state = parse_qs(urlsplit(callback_url).query)["state"][0]
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(LoginState)
            .where(LoginState.state_hash == sha256_hex(state))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )

    assert_problem(await browser.get(callback_url), 400)


async def test_a_sign_in_the_user_denies_returns_to_the_app_with_an_error(
    browser: httpx.AsyncClient,
) -> None:
    authorize_url = await start_login(browser, redirect_uri=f"{APP_ORIGIN}/signed-in?tab=1")
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]

    # What a provider sends back when the user refuses (RFC 6749 4.1.2.1). The mock provider
    # leaves the state out of its denial, so the test builds the compliant one.
    back = await browser.get(
        "/api/auth/mock/callback", params={"error": "access_denied", "state": state}
    )

    assert back.status_code == 302
    assert back.headers["location"] == f"{APP_ORIGIN}/signed-in?tab=1&error=access_denied"
    assert not [c for c in back.headers.get_list("set-cookie") if "ledgerline_refresh=" in c]


async def test_a_sign_in_denied_without_a_redirect_is_401(browser: httpx.AsyncClient) -> None:
    state = parse_qs(urlsplit(await start_login(browser)).query)["state"][0]

    denied = await browser.get(
        "/api/auth/mock/callback", params={"error": "access_denied", "state": state}
    )

    assert_problem(denied, 401)


async def test_a_denial_without_the_state_is_refused(browser: httpx.AsyncClient) -> None:
    denied = await browser.post(await start_login(browser), data={"action": "deny"})

    assert_problem(await browser.get(denied.headers["location"]), 400)


async def test_a_tampered_code_is_refused_and_creates_no_one(
    browser: httpx.AsyncClient, subject: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    callback_url = await consent(browser, await start_login(browser), subject)
    parts = urlsplit(callback_url)
    query = parse_qs(parts.query)
    forged = parts._replace(
        query=f"code=forged-{uuid.uuid4().hex}&state={query['state'][0]}"
    ).geturl()

    body = assert_problem(await browser.get(forged), 401)

    assert "forged" not in body["detail"]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).where(User.email == subject)) == 0


async def test_no_secret_reaches_a_log_line_or_an_event(
    browser: httpx.AsyncClient,
    subject: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Everything at the level the service runs at, and its own loggers down to DEBUG. (The
    # test's own client logs its traffic at DEBUG through httpcore; that is not the service.)
    caplog.set_level(logging.INFO)
    for logger in ("user", "common", "http", "sqlalchemy"):
        caplog.set_level(logging.DEBUG, logger=logger)
    authorize_url = await start_login(browser)
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    callback_url = await consent(browser, authorize_url, subject)
    code = parse_qs(urlsplit(callback_url).query)["code"][0]
    first = (await browser.get(callback_url)).json()
    spend = {"refresh_token": first["refresh_token"]}
    second = (await browser.post("/api/auth/refresh", json=spend)).json()
    # Within the reuse interval: the same pair again, then a reuse once it has moved on.
    replayed = await browser.post("/api/auth/refresh", json=spend)
    third = (
        await browser.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
    ).json()
    reused = await browser.post("/api/auth/refresh", json=spend)
    await browser.get("/api/users/me", headers=bearer(second))
    await browser.post("/api/auth/logout", json={"refresh_token": third["refresh_token"]})

    # The same pair again; its lifetime is counted from now, so it may read a second less.
    replay = replayed.json()
    assert {**replay, "expires_in": 0} == {**second, "expires_in": 0}
    assert second["expires_in"] - 1 <= replay["expires_in"] <= second["expires_in"]
    assert reused.status_code == 401
    secrets = {
        "state": state,
        "code": code,
        "client secret": CLIENT_SECRET,
        "first refresh token": first["refresh_token"],
        "second refresh token": second["refresh_token"],
        "third refresh token": third["refresh_token"],
        "access token": second["access_token"],
        "access token signature": second["access_token"].rsplit(".", 1)[1],
    }
    logged = caplog.text + "\n".join(str(record.msg) for record in caplog.records)
    assert "signed_in" in logged, "the flow was logged at all"
    assert "refresh_token_replayed" in logged
    assert "refresh_token_reused" in logged
    events = "\n".join(
        e.model_dump_json() for e in await outbox_events(sessionmaker, first["user_id"])
    )
    for name, secret in secrets.items():
        assert secret not in logged, f"the {name} was logged"
        assert secret not in events, f"the {name} is in an event"
        assert secret not in reused.text, f"the {name} is in an error reply"


async def _login_states(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(LoginState)) or 0


# --- edge cases of the callback ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("query_state", "cookie_state"),
    [
        ("\u00e9tat", "etat"),
        ("etat", "\u00e9tat"),
        ("\u00e9tat", "\u00e9tat"),
        ("\u2603" * 40, "\u2603" * 40),
    ],
    ids=["query", "cookie", "both", "both-long"],
)
async def test_a_non_ascii_state_is_the_sign_in_problem_not_a_crash(
    browser: httpx.AsyncClient, query_state: str, cookie_state: str
) -> None:
    response = await browser.get(
        "/api/auth/mock/callback",
        params={"code": "x", "state": query_state},
        headers={"cookie": f"ledgerline_login={cookie_state}".encode()},
    )

    body = assert_problem(response, 400)
    assert body["errors"][0]["field"] == "state"


@pytest.mark.parametrize("redirect_uri", [None, f"{APP_ORIGIN}/signed-in"])
async def test_a_failed_callback_leaves_no_state_to_replay(
    browser: httpx.AsyncClient,
    subject: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    redirect_uri: str | None,
) -> None:
    params = {"redirect_uri": redirect_uri} if redirect_uri else {}
    callback_url = await consent(browser, await start_login(browser, **params), subject)
    parts = urlsplit(callback_url)
    state = parse_qs(parts.query)["state"][0]
    forged = parts._replace(query=f"code=forged-{uuid.uuid4().hex}&state={state}").geturl()

    failed = await browser.get(forged)
    # The same state again, now with the provider's genuine code, as an attacker who saw
    # the failed callback would send it.
    browser.cookies.set("ledgerline_login", state, domain="user.test", path="/api/auth")
    replayed = await browser.get(callback_url)

    if redirect_uri is None:
        assert_problem(failed, 401)
    else:
        assert failed.status_code == 302
        assert failed.headers["location"].endswith("error=access_denied")
    assert_problem(replayed, 400)
    async with sessionmaker() as session:
        left = await session.scalar(
            select(func.count()).where(LoginState.state_hash == sha256_hex(state))
        )
    assert left == 0
