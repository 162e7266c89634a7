"""Steps of the sign-in flow and small checks the tests share."""

from typing import Any

import httpx

from user.cli import sign_in as cli_sign_in

from .conftest import BASE_URL


async def sign_in(
    browser: httpx.AsyncClient, subject: str, provider: str = "mock"
) -> dict[str, Any]:
    """Sign in through the whole flow (as the CLI does) and return the token response."""
    return await cli_sign_in(browser, BASE_URL, provider, subject)


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body
