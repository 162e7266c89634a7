"""Isolation, shown for every endpoint of every service: a second user can neither read,
list, change nor learn the existence of anything the first one made.

The endpoint list is read from each service's OpenAPI document, so a new endpoint fails
this suite until it is classified here and its isolation shown.
"""

import uuid
from typing import Any

import httpx

from .conftest import Suite

# Every endpoint, and how a second user's access to the first one's data is ruled out.
ENDPOINTS: dict[tuple[str, str, str], str] = {
    ("user", "GET", "/api/auth/providers"): "public: names of the sign-in providers",
    ("user", "GET", "/api/auth/{provider}/login"): "public: starts a sign-in",
    ("user", "GET", "/api/auth/{provider}/callback"): "bound to the browser's login cookie",
    ("user", "POST", "/api/auth/refresh"): "acts only on the refresh token presented",
    ("user", "POST", "/api/auth/logout"): "acts only on the refresh token presented",
    ("user", "GET", "/.well-known/jwks.json"): "public keys",
    ("user", "GET", "/api/users/me"): "shown below",
    ("user", "PATCH", "/api/users/me"): "shown below",
    ("user", "DELETE", "/api/users/me"): "shown below",
    ("invoice", "POST", "/api/clients"): "shown below",
    ("invoice", "GET", "/api/clients"): "shown below",
    ("invoice", "GET", "/api/clients/{client_id}"): "shown below",
    ("invoice", "POST", "/api/invoices"): "shown below",
    ("invoice", "GET", "/api/invoices"): "shown below",
    ("invoice", "GET", "/api/invoices/{invoice_id}"): "shown below",
    ("invoice", "POST", "/api/invoices/{invoice_id}/void"): "shown below",
    ("invoice", "GET", "/health-check"): "public: no user data",
    ("invoice", "GET", "/invoice/{invoice_id}"): "shown below",
    ("invoice", "POST", "/invoice"): "shown below",
    ("invoice", "GET", "/invoices"): "shown below",
}
HEALTH = {("GET", "/health/live"), ("GET", "/health/ready")}


async def test_every_endpoint_is_classified(suite: Suite) -> None:
    found = set()
    async with httpx.AsyncClient() as http:
        for service, base in (("user", suite.user_api), ("invoice", suite.invoice_api)):
            document = (await http.get(f"{base}/openapi.json")).json()
            for path, operations in document["paths"].items():
                for method in operations:
                    if (method.upper(), path) not in HEALTH:
                        found.add((service, method.upper(), path))

    assert found == set(ENDPOINTS)


def same_answer(theirs: httpx.Response, nobodys: httpx.Response) -> bool:
    """The reply for another user's id is the reply for an id that does not exist."""
    return (theirs.status_code, theirs.json()) == (nobodys.status_code, nobodys.json())


async def test_a_second_user_cannot_reach_the_first_users_data(
    suite: Suite, sign_in_as: Any
) -> None:
    alice = await sign_in_as(f"alice-{uuid.uuid4().hex[:8]}@example.com")
    mallory = await sign_in_as(f"mallory-{uuid.uuid4().hex[:8]}@example.com")
    await alice.api.patch("/api/users/me", json={"company_name": "Alice Consulting"})
    client = (
        await alice.api.post(
            "/api/clients", json={"name": "Zeta Industries", "email": "ap@zeta.example"}
        )
    ).json()
    invoice = (
        await alice.api.post(
            "/api/invoices",
            json={"client_id": client["id"], "description": "Audit", "amount": "900.00"},
        )
    ).json()
    mine = (
        await mallory.api.post(
            "/api/clients", json={"name": "Mallory's own", "email": "m@example.com"}
        )
    ).json()
    missing_invoice, missing_client = uuid.uuid4(), 2**31 - 1
    m = mallory.api

    # Named by id: the same answer as for an id that does not exist.
    assert same_answer(
        await m.get(f"/api/invoices/{invoice['id']}"),
        await m.get(f"/api/invoices/{missing_invoice}"),
    )
    assert same_answer(
        await m.get(f"/invoice/{invoice['id']}"), await m.get(f"/invoice/{missing_invoice}")
    )
    assert same_answer(
        await m.get(f"/api/clients/{client['id']}"), await m.get(f"/api/clients/{missing_client}")
    )
    assert same_answer(
        await m.post(f"/api/invoices/{invoice['id']}/void"),
        await m.post(f"/api/invoices/{missing_invoice}/void"),
    )
    assert (await m.get(f"/api/invoices/{invoice['id']}")).status_code == 404
    # Billing someone else's client: the same refusal as for a client that does not exist.
    assert same_answer(
        await m.post(
            "/api/invoices",
            json={"client_id": client["id"], "description": "Fake", "amount": "1.00"},
        ),
        await m.post(
            "/api/invoices",
            json={"client_id": missing_client, "description": "Fake", "amount": "1.00"},
        ),
    )
    assert same_answer(
        await m.post(
            "/invoice", json={"jobDescription": "Fake", "amount": 1, "customerId": client["id"]}
        ),
        await m.post(
            "/invoice", json={"jobDescription": "Fake", "amount": 1, "customerId": missing_client}
        ),
    )

    # Lists hold only the caller's own.
    assert [c["id"] for c in (await m.get("/api/clients")).json()["items"]] == [mine["id"]]
    assert (await m.get("/api/invoices")).json()["items"] == []
    assert (await m.get("/api/invoices", params={"client_name": "Zeta"})).json()["items"] == []
    assert (await m.get("/invoices")).json() == []

    # The profile endpoints only ever mean the caller.
    mallory_me = await m.patch("/api/users/me", json={"company_name": "Mallory Ltd"})
    assert mallory_me.json()["id"] == mallory.user_id
    assert (await m.get("/api/users/me")).json()["company_name"] == "Mallory Ltd"
    assert (await m.delete("/api/users/me")).status_code == 204

    # Nothing of Alice's changed, and Alice still works.
    alice_me = (await alice.api.get("/api/users/me")).json()
    assert alice_me["company_name"] == "Alice Consulting"
    still = (await alice.api.get(f"/api/invoices/{invoice['id']}")).json()
    assert still["status"] == "pending"
    assert [i["id"] for i in (await alice.api.get("/api/invoices")).json()["items"]] == [
        invoice["id"]
    ]
