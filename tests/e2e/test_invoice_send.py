"""An invoice's PDF and its sending through the gateway, with every service a process: the
PDF stored in S3 (moto, a process) and cached by ETag, the fee taken from the wallet by the
real payment service, the email sent by the email service through SendGrid's API (the
providers' simulator, a process) with the PDF attached, and delivered as the provider's
signed webhook reports it."""

import asyncio
import uuid
from typing import Any

from .conftest import Suite

CARD = {"number": "1234 5656 7822 5678", "expiry": "01-2040", "name": "Work Card"}


async def test_an_owner_downloads_and_sends_an_invoice_paying_the_fee(
    suite: Suite, sign_in_as: Any
) -> None:
    owner = await sign_in_as(f"owner-{uuid.uuid4().hex[:8]}@example.com")
    api = owner.api
    client = (
        await api.post("/api/clients", json={"name": "Zeta", "email": "ap@zeta.example"})
    ).json()
    invoice = (
        await api.post(
            "/api/invoices",
            json={
                "client_id": client["id"],
                "description": "November",
                "lines": [{"description": "Design", "quantity": "2", "unit_price": "50.00"}],
            },
        )
    ).json()
    assert (invoice["number"], invoice["amount"]) == ("INV-000001", "100.00")

    pdf = await api.get(invoice["links"]["pdf"])
    cached = await api.get(invoice["links"]["pdf"], headers={"If-None-Match": pdf.headers["etag"]})
    short = await api.post(invoice["links"]["send"], json={})
    topup = await api.post(
        "/api/wallet/topups", json={"amount": "5.00", "currency": "USD", "card": CARD}
    )
    sent = await api.post(invoice["links"]["send"], json={"message": "Thanks!"})

    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF-")
    assert cached.status_code == 304
    assert short.status_code == 402, short.text
    assert topup.status_code == 201, topup.text
    assert sent.status_code == 202, sent.text
    assert sent.json()["links"]["email"] == f"/api/emails/{sent.json()['send_id']}"
    wallet = (await api.get("/api/wallet")).json()
    assert wallet["balances"] == [{"currency": "USD", "balance": "4.50"}]

    await api.post(f"/api/invoices/{invoice['id']}/void")
    void = await api.post(invoice["links"]["send"], json={})
    assert void.status_code == 409
    assert (await api.get("/api/wallet")).json()["balances"] == wallet["balances"]


async def wait_for_status(api: Any, path: str, status: str) -> dict[str, Any]:
    for _ in range(300):
        found = await api.get(path)
        if found.status_code == 200 and found.json()["status"] == status:
            return dict(found.json())
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} never became {status}: {found.text}")


async def test_a_sent_invoice_reaches_the_client_once_with_its_pdf_and_is_delivered(
    suite: Suite, sign_in_as: Any
) -> None:
    owner = await sign_in_as(f"owner-{uuid.uuid4().hex[:8]}@example.com")
    api = owner.api
    client = (
        await api.post("/api/clients", json={"name": "Omega", "email": "ap@omega.example"})
    ).json()
    invoice = (
        await api.post(
            "/api/invoices",
            json={"client_id": client["id"], "description": "December", "amount": "80.00"},
        )
    ).json()
    topup = await api.post(
        "/api/wallet/topups", json={"amount": "2.00", "currency": "USD", "card": CARD}
    )
    assert topup.status_code == 201, topup.text
    # The simulator reports each message it accepts as delivered, signed, through the gateway.
    suite.mail.report_to(f"{suite.gateway}/webhooks")

    sent = await api.post(invoice["links"]["send"], json={"message": "Thank you!"})
    assert sent.status_code == 202, sent.text
    send_id = sent.json()["send_id"]

    email = await wait_for_status(api, f"/api/emails/{send_id}", "delivered")
    [accepted] = [m for m in suite.mail.messages() if m["send_id"] == send_id]
    assert accepted["provider"] == "sendgrid"
    assert accepted["recipient"] == "ap@omega.example"
    assert accepted["attachment_bytes"] > 1000  # the rendered PDF went with it
    assert suite.mail.counts()["sendgrid"][send_id] == 1
    assert [
        e["id"] for e in (await api.get(f"/api/invoices/{invoice['id']}/emails")).json()["items"]
    ] == [send_id]
    assert email["provider"] == "sendgrid"
    # Delivered: the fee stays taken.
    assert (await api.get("/api/wallet")).json()["balances"] == [
        {"currency": "USD", "balance": "1.50"}
    ]
