"""Sign-in end to end through the gateway: provider, callback, tokens, both services' APIs,
refresh with rotation, logout, and account deletion reaching the invoice service."""

import asyncio
import uuid
from typing import Any

import httpx

from .conftest import Suite


async def test_a_new_user_signs_in_works_refreshes_and_signs_out(
    suite: Suite, sign_in_as: Any
) -> None:
    alice = await sign_in_as(f"alice-{uuid.uuid4().hex[:8]}@example.com")

    me = await alice.api.get("/api/users/me")
    client = await alice.api.post(
        "/api/clients", json={"name": "Acme Ltd", "email": "billing@acme.example"}
    )
    invoice = await alice.api.post(
        "/api/invoices",
        json={"client_id": client.json()["id"], "description": "Design work", "amount": "450.00"},
    )
    refreshed = await alice.api.post(
        "/api/auth/refresh", json={"refresh_token": alice.refresh_token}
    )
    new_tokens = refreshed.json()
    listed = await alice.api.get(
        "/api/invoices", headers={"Authorization": f"Bearer {new_tokens['access_token']}"}
    )
    spent_again = await alice.api.post(
        "/api/auth/refresh", json={"refresh_token": alice.refresh_token}
    )
    after_reuse = await alice.api.post(
        "/api/auth/refresh", json={"refresh_token": new_tokens["refresh_token"]}
    )

    assert me.status_code == 200
    assert me.json()["id"] == alice.user_id
    assert invoice.status_code == 201, invoice.text
    assert refreshed.status_code == 200
    assert new_tokens["refresh_token"] != alice.refresh_token
    assert [i["id"] for i in listed.json()["items"]] == [invoice.json()["id"]]
    # Presented again within the reuse interval, while its successor is unused (two tabs
    # refreshing together), a spent token gets the same pair back rather than a sign-out.
    assert spent_again.status_code == 200
    assert spent_again.json()["refresh_token"] == new_tokens["refresh_token"]
    assert after_reuse.status_code == 200
    # Once its successor has been used, presenting the spent token again is a theft: the
    # whole sign-in is revoked, the newest token with it.
    stolen = await alice.api.post("/api/auth/refresh", json={"refresh_token": alice.refresh_token})
    newest = await alice.api.post(
        "/api/auth/refresh", json={"refresh_token": after_reuse.json()["refresh_token"]}
    )
    assert stolen.status_code == 401
    assert newest.status_code == 401


async def test_logout_revokes_the_refresh_token(suite: Suite, sign_in_as: Any) -> None:
    bob = await sign_in_as(f"bob-{uuid.uuid4().hex[:8]}@example.com")

    out = await bob.api.post("/api/auth/logout", json={"refresh_token": bob.refresh_token})
    refresh = await bob.api.post("/api/auth/refresh", json={"refresh_token": bob.refresh_token})

    assert out.status_code == 204
    assert refresh.status_code == 401
    assert refresh.headers["content-type"] == "application/problem+json"


async def test_signing_in_again_finds_the_same_user(suite: Suite, sign_in_as: Any) -> None:
    subject = f"carol-{uuid.uuid4().hex[:8]}@example.com"

    first = await sign_in_as(subject)
    second = await sign_in_as(subject)

    assert first.user_id == second.user_id


async def test_a_deleted_accounts_token_is_refused_by_every_service(
    suite: Suite, sign_in_as: Any
) -> None:
    dave = await sign_in_as(f"dave-{uuid.uuid4().hex[:8]}@example.com")
    client = await dave.api.post("/api/clients", json={"name": "Old", "email": "o@example.com"})
    assert client.status_code == 201

    deleted = await dave.api.delete("/api/users/me")
    at_user_service = await dave.api.get("/api/users/me")
    at_invoice_service = await _until_refused(dave.api, "/api/clients")
    at_payment_service = await _until_refused(dave.api, "/api/payments")

    assert deleted.status_code == 204
    assert at_user_service.status_code == 401
    assert at_invoice_service.status_code == 401
    assert at_invoice_service.headers["content-type"] == "application/problem+json"
    assert at_payment_service.status_code == 401
    assert at_payment_service.headers["content-type"] == "application/problem+json"


async def _until_refused(api: httpx.AsyncClient, path: str) -> httpx.Response:
    """The invoice and payment services learn of the deletion by event: allow them a few
    seconds."""
    for _ in range(100):
        response = await api.get(path)
        if response.status_code != 200:
            return response
        await asyncio.sleep(0.2)
    return response
