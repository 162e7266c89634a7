"""Seed 001's contract: /invoice and /invoices with its field names and statuses."""

import uuid

import httpx

from .factories import create_client, create_invoice


async def test_posting_an_invoice_returns_the_seed_shape(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = await create_client(api, auth, name="Jane Smith", email="jane.smith@example.com")

    response = await api.post(
        "/invoice",
        json={
            "jobDescription": "Software Development and Testing",
            "amount": 199.99,
            "customerId": client["id"],
        },
        headers=auth,
    )

    assert response.status_code == 201
    body = response.json()
    assert uuid.UUID(body.pop("id"))
    assert body == {
        "jobDescription": "Software Development and Testing",
        "customerId": client["id"],
        "amount": 199.99,
        "customerName": "Jane Smith",
        "customerEmail": "jane.smith@example.com",
        "invoiceStatus": "PENDING",
    }


async def test_an_invoice_is_read_back_in_the_seed_shape(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])
    await api.post(f"/api/invoices/{invoice['id']}/void", headers=auth)

    response = await api.get(f"/invoice/{invoice['id']}", headers=auth)

    assert response.status_code == 200
    assert response.json()["invoiceStatus"] == "CANCELLED"
    assert response.json()["amount"] == 199.99


async def test_an_unknown_customer_is_named_in_the_problem(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await api.post(
        "/invoice",
        json={"jobDescription": "Work", "amount": 10, "customerId": 987654321},
        headers=auth,
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "customerId"


async def test_invoices_are_filtered_by_seed_status_ten_at_a_time(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    client = await create_client(api, auth)
    created = [
        await create_invoice(api, auth, client["id"], due_date=f"2030-02-{day:02d}")
        for day in range(1, 13)
    ]
    await api.post(f"/api/invoices/{created[0]['id']}/void", headers=auth)

    first = await api.get("/invoices", params={"invoiceStatus": "PENDING"}, headers=auth)
    second = await api.get(
        "/invoices",
        params={"invoiceStatus": "PENDING", "cursor": first.headers["x-next-cursor"]},
        headers=auth,
    )
    cancelled = await api.get("/invoices", params={"invoiceStatus": "CANCELLED"}, headers=auth)

    assert len(first.json()) == 10
    assert 'rel="next"' in first.headers["link"]
    assert [i["id"] for i in first.json() + second.json()] == [c["id"] for c in created[:0:-1]]
    assert "x-next-cursor" not in second.headers
    assert [i["id"] for i in cancelled.json()] == [created[0]["id"]]
