"""Steps of the sign-in flow and small checks the tests share."""

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from user.cli import sign_in as cli_sign_in
from user.models import OutboxMessage

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


async def outbox_events(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: str
) -> list[CloudEvent]:
    """The events staged for one user, oldest first."""
    async with sessionmaker() as session:
        payloads = await session.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.message_key == user_id)
            .order_by(OutboxMessage.id)
        )
        return [CloudEvent.model_validate_json(payload) for payload in payloads]


async def start_login(browser: httpx.AsyncClient, provider: str = "mock", **params: str) -> str:
    """Begin a sign-in; the provider's authorization URL the browser is sent to."""
    response = await browser.get(f"/api/auth/{provider}/login", params=params)
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def consent(browser: httpx.AsyncClient, authorize_url: str, subject: str) -> str:
    """Sign in at the provider's form; the callback URL it redirects the browser to."""
    response = await browser.post(authorize_url, data={"sub": subject, "action": "authorize"})
    assert response.status_code == 302, response.text
    return response.headers["location"]
