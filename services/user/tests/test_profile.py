"""The signed-in user's profile: read, change (with its event), refuse bad input, delete."""

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from user.models import Identity, OutboxMessage, User

from .helpers import assert_problem, bearer, outbox_events, sign_in

ADDRESS = {
    "line1": "1 Market Street",
    "line2": "Suite 200",
    "city": "San Francisco",
    "region": "CA",
    "postal_code": "94105",
    "country": "US",
}


@pytest.fixture
async def tokens(browser: httpx.AsyncClient, subject: str) -> dict[str, Any]:
    return await sign_in(browser, subject)


async def test_a_new_profile_has_an_empty_wallet(
    browser: httpx.AsyncClient, tokens: dict[str, Any], subject: str
) -> None:
    me = (await browser.get("/api/users/me", headers=bearer(tokens))).json()

    assert me["email"] == subject
    assert me["name"] is None
    assert me["company_name"] is None
    assert me["address"] is None
    assert me["wallet_balance"] == "0.00"
    assert me["wallet_currency"] == "USD"


async def test_a_profile_change_is_returned_and_announced(
    browser: httpx.AsyncClient,
    tokens: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    change = {
        "name": "Alice Smith",
        "email": "billing@acme.example",
        "company_name": "Acme Ltd",
        "address": ADDRESS,
    }

    response = await browser.patch("/api/users/me", json=change, headers=bearer(tokens))

    assert response.status_code == 200, response.text
    me = (await browser.get("/api/users/me", headers=bearer(tokens))).json()
    assert me == response.json()
    assert {k: me[k] for k in change} == change
    registered, updated = await outbox_events(sessionmaker, tokens["user_id"])
    assert registered.type == "user.registered"
    assert updated.type == "user.updated"
    assert updated.subject == tokens["user_id"]
    assert updated.data == {"user_id": tokens["user_id"], **change}


async def test_only_the_fields_sent_change_and_null_clears_one(
    browser: httpx.AsyncClient, tokens: dict[str, Any]
) -> None:
    await browser.patch(
        "/api/users/me",
        json={"name": "Alice", "company_name": "Acme", "address": ADDRESS},
        headers=bearer(tokens),
    )

    response = await browser.patch(
        "/api/users/me", json={"company_name": None}, headers=bearer(tokens)
    )

    me = response.json()
    assert me["name"] == "Alice"
    assert me["company_name"] is None
    assert me["address"] == ADDRESS


async def test_an_address_may_leave_out_its_optional_parts(
    browser: httpx.AsyncClient, tokens: dict[str, Any]
) -> None:
    address = {"line1": "Rua Augusta 10", "city": "Lisboa", "country": "PT"}

    response = await browser.patch(
        "/api/users/me", json={"address": address}, headers=bearer(tokens)
    )

    assert response.status_code == 200, response.text
    assert response.json()["address"] == {
        **address,
        "line2": None,
        "region": None,
        "postal_code": None,
    }


async def test_a_change_that_changes_nothing_announces_nothing(
    browser: httpx.AsyncClient,
    tokens: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await browser.patch("/api/users/me", json={}, headers=bearer(tokens))
    await browser.patch("/api/users/me", json={"name": None}, headers=bearer(tokens))

    events = await outbox_events(sessionmaker, tokens["user_id"])
    assert [e.type for e in events] == ["user.registered"]


BAD_CHANGES = [
    ({"email": "not-an-email"}, "email"),
    ({"email": ""}, "email"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": 42}, "name"),
    ({"company_name": ["Acme"]}, "company_name"),
    ({"address": "1 Market Street"}, "address"),
    ({"address": {**ADDRESS, "country": "usa"}}, "address.country"),
    ({"address": {**ADDRESS, "country": "us"}}, "address.country"),
    ({"address": {k: v for k, v in ADDRESS.items() if k != "line1"}}, "address.line1"),
    ({"address": {k: v for k, v in ADDRESS.items() if k != "city"}}, "address.city"),
    ({"address": {**ADDRESS, "postal_code": "<script>"}}, "address.postal_code"),
    ({"address": {**ADDRESS, "floor": 3}}, "address.floor"),
    ({"wallet_balance": "1000000.00"}, "wallet_balance"),
    ({"id": "00000000-0000-0000-0000-000000000000"}, "id"),
    ({"name": "Alice", "colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("change", "field"), BAD_CHANGES, ids=[field for _, field in BAD_CHANGES])
async def test_a_bad_change_names_the_field_and_changes_nothing(
    browser: httpx.AsyncClient,
    tokens: dict[str, Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    change: dict[str, Any],
    field: str,
) -> None:
    before = (await browser.get("/api/users/me", headers=bearer(tokens))).json()
    outbox_before = await _outbox_size(sessionmaker)

    response = await browser.patch("/api/users/me", json=change, headers=bearer(tokens))

    problem = assert_problem(response, 422)
    assert field in [error["field"] for error in problem["errors"]]
    assert (await browser.get("/api/users/me", headers=bearer(tokens))).json() == before
    assert await _outbox_size(sessionmaker) == outbox_before


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b"null", b'"name"'], ids=["broken", "list", "null", "string"]
)
async def test_a_body_that_is_not_an_object_is_422(
    browser: httpx.AsyncClient, tokens: dict[str, Any], body: bytes
) -> None:
    response = await browser.patch(
        "/api/users/me",
        content=body,
        headers={**bearer(tokens), "content-type": "application/json"},
    )

    assert_problem(response, 422)


async def test_deleting_the_account_erases_it_and_refuses_its_tokens(
    browser: httpx.AsyncClient,
    tokens: dict[str, Any],
    subject: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await browser.patch(
        "/api/users/me",
        json={"name": "Alice", "company_name": "Acme", "address": ADDRESS},
        headers=bearer(tokens),
    )

    deleted = await browser.delete("/api/users/me", headers=bearer(tokens))

    assert deleted.status_code == 204
    assert_problem(await browser.get("/api/users/me", headers=bearer(tokens)), 401)
    assert_problem(
        await browser.patch("/api/users/me", json={"name": "Back"}, headers=bearer(tokens)), 401
    )
    assert_problem(
        await browser.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
        401,
    )
    events = await outbox_events(sessionmaker, tokens["user_id"])
    assert events[-1].type == "user.deleted"
    assert events[-1].data == {"user_id": tokens["user_id"]}
    async with sessionmaker() as session:
        user = await session.get(User, _uuid(tokens["user_id"]))
        identities = await session.scalar(
            select(func.count()).where(Identity.user_id == _uuid(tokens["user_id"]))
        )
    assert user is not None
    assert user.deleted_at is not None
    personal = [
        user.email,
        user.name,
        user.company_name,
        user.address_line1,
        user.address_line2,
        user.address_city,
        user.address_region,
        user.address_postal_code,
        user.address_country,
    ]
    assert personal == [None] * len(personal)
    assert identities == 0
    # Signing in again with the same provider account starts a new, empty account.
    again = await sign_in(browser, subject)
    assert again["user_id"] != tokens["user_id"]


async def _outbox_size(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)
