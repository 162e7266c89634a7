"""Sign-in through a real OpenID Connect provider, the way a browser or a script walks it."""

import httpx

from .helpers import bearer, sign_in


async def test_a_first_sign_in_creates_the_user_and_returns_tokens(
    browser: httpx.AsyncClient, subject: str
) -> None:
    tokens = await sign_in(browser, subject)

    me = await browser.get("/api/users/me", headers=bearer(tokens))

    assert me.status_code == 200, me.text
    assert me.json()["email"] == subject
    assert me.json()["id"] == tokens["user_id"]
