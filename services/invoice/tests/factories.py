"""Factories that create clients and invoices through the API, with keyword overrides."""

from typing import Any

import httpx


async def create_client(
    api: httpx.AsyncClient, auth: dict[str, str], **overrides: Any
) -> dict[str, Any]:
    body = {"name": "Jane Smith", "email": "jane.smith@example.com", **overrides}
    response = await api.post("/api/clients", json=body, headers=auth)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def create_invoice(
    api: httpx.AsyncClient, auth: dict[str, str], client_id: int, **overrides: Any
) -> dict[str, Any]:
    body = {
        "client_id": client_id,
        "description": "Software Development and Testing",
        "amount": "199.99",
        "due_date": "2030-01-31",
        **overrides,
    }
    response = await api.post("/api/invoices", json=body, headers=auth)
    assert response.status_code == 201, response.text
    return dict(response.json())
