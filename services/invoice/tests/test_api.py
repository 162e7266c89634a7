"""The /api endpoints: clients and invoices of one owner, through HTTP on the real schema."""

import re
import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.events import CloudEvent
from common.testing.identity import TestIssuer
from invoice.models import OutboxMessage

from .factories import create_client, create_invoice


async def test_an_invoice_is_created_for_a_client_and_read_back(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = await create_client(api, auth, name="Acme Ltd")

    created = await create_invoice(api, auth, client["id"], amount="1250.50", currency="EUR")
    read = await api.get(f"/api/invoices/{created['id']}", headers=auth)

    assert read.status_code == 200
    body = read.json()
    assert body["client_name"] == "Acme Ltd"
    assert body["amount"] == "1250.50"
    assert body["currency"] == "EUR"
    assert body["status"] == "pending"
    assert body["due_date"] == "2030-01-31"


async def test_an_amount_is_answered_to_the_cent_by_the_post_and_by_later_reads(
    api: httpx.AsyncClient, auth: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    client = await create_client(api, auth)

    created = await create_invoice(api, auth, client["id"], amount="1000")
    read = (await api.get(f"/api/invoices/{created['id']}", headers=auth)).json()
    listed = (await api.get("/api/invoices", headers=auth)).json()["items"]

    assert created["amount"] == read["amount"] == listed[0]["amount"] == "1000.00"
    async with sessionmaker() as session:
        payload = await session.scalar(
            select(OutboxMessage.payload).where(OutboxMessage.payload.contains(created["id"]))
        )
    assert payload is not None
    assert CloudEvent.model_validate_json(payload).data["amount"] == "1000.00"


async def test_times_are_written_in_utc_with_a_z(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = await create_client(api, auth)

    created = await create_invoice(api, auth, client["id"])

    for stamp in (created["created_at"], created["updated_at"], client["created_at"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp


async def test_a_created_invoice_shows_the_times_that_were_stored(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = await create_client(api, auth)

    created = await create_invoice(api, auth, client["id"])
    read = (await api.get(f"/api/invoices/{created['id']}", headers=auth)).json()

    assert (created["created_at"], created["updated_at"]) == (
        read["created_at"],
        read["updated_at"],
    )


async def test_an_invoice_without_a_due_date_is_due_net_30(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = await create_client(api, auth)

    created = await create_invoice(api, auth, client["id"], due_date=None)

    created_on = created["created_at"][:10]
    assert created["due_date"] > created_on
    assert created["currency"] == "USD"


async def test_creating_an_invoice_stages_its_event_in_the_same_transaction(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    owner: uuid.UUID,
) -> None:
    client = await create_client(api, auth)

    created = await create_invoice(api, auth, client["id"])

    async with sessionmaker() as session:
        payloads = (
            await session.scalars(
                select(OutboxMessage.payload).where(OutboxMessage.payload.contains(created["id"]))
            )
        ).all()
    assert len(payloads) == 1
    event = CloudEvent.model_validate_json(payloads[0])
    assert event.type == "invoice.created"
    assert event.subject == str(owner)
    assert event.data["amount"] == "199.99"


async def test_voiding_an_invoice_changes_its_status_once(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])

    voided = await api.post(f"/api/invoices/{invoice['id']}/void", headers=auth)
    again = await api.post(f"/api/invoices/{invoice['id']}/void", headers=auth)

    assert voided.status_code == 200
    assert voided.json()["status"] == "void"
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


async def test_clients_are_listed_by_name_a_page_at_a_time(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for name in ["Cyan", "Amber", "Blue"]:
        await create_client(api, auth, name=name)

    first = (await api.get("/api/clients", params={"limit": 2}, headers=auth)).json()
    second = (
        await api.get(
            "/api/clients", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth
        )
    ).json()

    assert [c["name"] for c in first["items"]] == ["Amber", "Blue"]
    assert [c["name"] for c in second["items"]] == ["Cyan"]
    assert second["next_cursor"] is None


async def test_another_owners_invoice_and_client_are_not_found(
    api: httpx.AsyncClient, auth: dict[str, str], test_issuer: TestIssuer
) -> None:
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])
    stranger = test_issuer.headers(uuid.uuid4())

    responses = [
        await api.get(f"/api/invoices/{invoice['id']}", headers=stranger),
        await api.post(f"/api/invoices/{invoice['id']}/void", headers=stranger),
        await api.get(f"/api/clients/{client['id']}", headers=stranger),
        await api.get(f"/invoice/{invoice['id']}", headers=stranger),
    ]
    listed = await api.get("/api/invoices", headers=stranger)
    invoiced = await api.post(
        "/api/invoices",
        json={"client_id": client["id"], "description": "x", "amount": "1.00"},
        headers=stranger,
    )

    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert all(invoice["id"] not in r.text for r in responses)
    assert listed.json()["items"] == []
    assert invoiced.status_code == 422
    assert invoiced.json()["errors"][0]["field"] == "client_id"
    still = await api.get(f"/api/invoices/{invoice['id']}", headers=auth)
    assert still.json()["status"] == "pending"


async def test_every_endpoint_but_health_needs_a_token(api: httpx.AsyncClient) -> None:
    some_id = uuid.uuid4()
    guarded = [
        ("GET", "/api/invoices"),
        ("POST", "/api/invoices"),
        ("GET", f"/api/invoices/{some_id}"),
        ("POST", f"/api/invoices/{some_id}/void"),
        ("GET", "/api/clients"),
        ("POST", "/api/clients"),
        ("GET", "/api/clients/1"),
        ("GET", f"/invoice/{some_id}"),
        ("POST", "/invoice"),
        ("GET", "/invoices"),
    ]

    for method, path in guarded:
        response = await api.request(method, path, headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")

    assert (await api.get("/health/live")).status_code == 200
    assert (await api.get("/health/ready")).status_code == 200
    assert (await api.get("/health-check")).json() == {"status": "UP"}
