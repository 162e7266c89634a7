"""Isolation, shown for every endpoint of every service: a second user can neither read,
list, change nor learn the existence of anything the first one made.

The endpoint list is read from each service's OpenAPI document, so a new endpoint fails
this suite until it is classified here and its isolation shown.
"""

import asyncio
import uuid
from typing import Any

import httpx

from common.events import CLOUDEVENTS_CONTENT_TYPE, CloudEvent
from common.kafka import create_producer, ensure_topics
from simulators.testing import FakePayControl

from .conftest import Suite

INTERNAL = (
    "not routed by the gateway (shown below); the caller's token decides the owner, and "
    "another owner's data is out of reach as through the API (shown below)"
)
WEBHOOK = (
    "no token: a provider's signed report, reads nothing back; a forged one changes nothing "
    "(shown below, and in services/email/tests/test_webhooks.py per provider)"
)
CARD = {"number": "1234 5656 7822 5678", "expiry": "01-2040", "name": "Work Card"}

# Every endpoint, and how a second user's access to the first one's data is ruled out.
ENDPOINTS: dict[tuple[str, str, str], str] = {
    ("user", "GET", "/api/auth/providers"): "public: names of the sign-in providers",
    ("user", "GET", "/api/auth/{provider}/login"): "public: starts a sign-in",
    ("user", "GET", "/api/auth/{provider}/callback"): "bound to the browser's login cookie",
    ("user", "POST", "/api/auth/refresh"): "acts only on the refresh token presented",
    ("user", "POST", "/api/auth/logout"): "acts only on the refresh token presented",
    ("user", "POST", "/api/auth/logout-all"): "revokes only the token's own user's sign-ins",
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
    ("invoice", "GET", "/api/invoices/export.csv"): (
        "the token's owner's invoices only (services/invoice/tests/test_export.py)"
    ),
    ("invoice", "POST", "/api/invoices/{invoice_id}/void"): "shown below",
    ("invoice", "GET", "/api/invoices/{invoice_id}/pdf"): "shown below",
    ("invoice", "POST", "/api/invoices/{invoice_id}/send"): "shown below",
    ("invoice", "GET", "/health-check"): "public: no user data",
    ("invoice", "GET", "/invoice/{invoice_id}"): "shown below",
    ("invoice", "POST", "/invoice"): "shown below",
    ("invoice", "GET", "/invoices"): "shown below",
    ("invoice", "POST", "/invoice/pay/{invoice_id}"): "shown below",
    ("payment", "GET", "/api/payments"): "shown below",
    ("payment", "GET", "/api/payments/{payment_id}"): "shown below",
    ("payment", "GET", "/api/wallet"): "shown below",
    ("payment", "POST", "/api/wallet/topups"): "shown below",
    ("payment", "GET", "/api/wallet/transactions"): "shown below",
    ("payment", "POST", "/internal/invoice-payments"): INTERNAL,
    ("payment", "POST", "/internal/wallet/debits"): INTERNAL,
    ("payment", "POST", "/internal/wallet/refunds"): INTERNAL,
    ("payment", "POST", "/api/payment-methods"): "shown below",
    ("payment", "GET", "/api/payment-methods"): "shown below",
    ("payment", "DELETE", "/api/payment-methods/{method_id}"): "shown below",
    ("payment", "GET", "/api/billing-runs"): "runs are the platform's; counts are the caller's",
    ("payment", "GET", "/api/billing-runs/{run_id}"): "shown below",
    ("email", "GET", "/api/emails"): "shown below",
    ("email", "GET", "/api/emails/{email_id}"): "shown below",
    ("email", "GET", "/api/invoices/{invoice_id}/emails"): "shown below",
    ("email", "POST", "/webhooks/sendgrid"): WEBHOOK,
    ("email", "POST", "/webhooks/mailgun"): WEBHOOK,
    ("email", "POST", "/webhooks/ses"): WEBHOOK,
    ("sync", "POST", "/api/sync/connections"): "shown below",
    ("sync", "GET", "/api/sync/connections"): "shown below",
    ("sync", "DELETE", "/api/sync/connections/{connection_id}"): "shown below",
    ("sync", "GET", "/api/sync/status"): "shown below",
    ("sync", "POST", "/api/sync/runs"): "shown below",
}
HEALTH = {("GET", "/health/live"), ("GET", "/health/ready")}


async def test_every_endpoint_is_classified(suite: Suite) -> None:
    found = set()
    async with httpx.AsyncClient() as http:
        for service, base in suite.apis.items():
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
    assert same_answer(
        await m.get(f"/api/invoices/{invoice['id']}/pdf"),
        await m.get(f"/api/invoices/{missing_invoice}/pdf"),
    )
    assert (await m.get(f"/api/invoices/{invoice['id']}/pdf")).status_code == 404
    # Sending another's invoice: not found, before any fee is asked for.
    assert same_answer(
        await m.post(f"/api/invoices/{invoice['id']}/send", json={}),
        await m.post(f"/api/invoices/{missing_invoice}/send", json={}),
    )
    assert (await m.post(f"/api/invoices/{invoice['id']}/send", json={})).status_code == 404
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
    alice_pdf = await alice.api.get(f"/api/invoices/{invoice['id']}/pdf")
    assert alice_pdf.status_code == 200
    assert alice_pdf.content.startswith(b"%PDF-")
    assert [i["id"] for i in (await alice.api.get("/api/invoices")).json()["items"]] == [
        invoice["id"]
    ]


async def test_a_second_user_cannot_reach_the_first_users_payments_or_wallet(
    suite: Suite, sign_in_as: Any
) -> None:
    alice = await sign_in_as(f"alice-{uuid.uuid4().hex[:8]}@example.com")
    mallory = await sign_in_as(f"mallory-{uuid.uuid4().hex[:8]}@example.com")
    client = (
        await alice.api.post("/api/clients", json={"name": "Zeta", "email": "ap@zeta.example"})
    ).json()
    paid = await alice.api.post(
        "/invoice",
        json={"jobDescription": "Audit", "amount": 90, "customerId": client["id"], "card": CARD},
    )
    pending = (
        await alice.api.post(
            "/invoice", json={"jobDescription": "Audit", "amount": 80, "customerId": client["id"]}
        )
    ).json()
    topup = await alice.api.post(
        "/api/wallet/topups", json={"amount": "20.00", "currency": "USD", "card": CARD}
    )
    assert (paid.status_code, topup.status_code) == (201, 201), (paid.text, topup.text)
    payment_id = topup.json()["payment"]["id"]
    async with httpx.AsyncClient(base_url=suite.payment_api) as internal:
        fee = await internal.post(
            "/internal/wallet/debits",
            json={"reference": "fee-1", "amount": "1.00", "currency": "USD", "description": "Fee"},
            headers=alice.headers,
        )
    assert fee.status_code == 201, fee.text
    alice_before = [
        (await alice.api.get(path)).json()
        for path in ("/api/payments", "/api/wallet", "/api/wallet/transactions")
    ]
    m = mallory.api

    # Named by id: the same answer as for an id that does not exist, and nothing charged.
    assert same_answer(
        await m.get(f"/api/payments/{payment_id}"), await m.get(f"/api/payments/{uuid.uuid4()}")
    )
    assert same_answer(
        await m.post(f"/invoice/pay/{pending['id']}", json=CARD),
        await m.post(f"/invoice/pay/{uuid.uuid4()}", json=CARD),
    )
    assert FakePayControl(f"{suite.fakepay}/_control").ledger(pending["id"]) == []
    # Lists and balances hold only the caller's own; a top-up fills only the caller's wallet.
    assert (await m.get("/api/payments")).json()["items"] == []
    assert (await m.get("/api/wallet")).json()["balances"] == []
    assert (await m.get("/api/wallet/transactions")).json()["items"] == []
    mine = await m.post(
        "/api/wallet/topups", json={"amount": "5.00", "currency": "USD", "card": CARD}
    )
    assert mine.status_code == 201
    assert (await m.get("/api/wallet")).json()["balances"] == [
        {"currency": "USD", "balance": "5.00"}
    ]

    # /internal/ is not routed by the gateway, whoever asks.
    for path in (
        "/internal/invoice-payments",
        "/internal/wallet/debits",
        "/internal/wallet/refunds",
    ):
        refused = await m.post(path, json={})
        assert refused.status_code == 404, path
        assert refused.headers["content-type"] == "application/problem+json"
    # Called directly (from inside the network), the token decides the owner: Mallory can
    # neither pay Alice's paid invoice again, nor refund Alice's fee, nor spend her balance.
    async with httpx.AsyncClient(base_url=suite.payment_api, headers=mallory.headers) as internal:
        repay = await internal.post(
            "/internal/invoice-payments",
            json={
                "invoice_id": paid.json()["id"],
                "amount": "90.00",
                "currency": "USD",
                "description": "Audit",
                "card": CARD,
            },
        )
        refund = await internal.post("/internal/wallet/refunds", json={"reference": "fee-1"})
        nobodys = await internal.post("/internal/wallet/refunds", json={"reference": "fee-9"})
        spend = await internal.post(
            "/internal/wallet/debits",
            json={"reference": "x-1", "amount": "19.00", "currency": "USD", "description": "Fee"},
        )
    assert repay.status_code == 409
    assert same_answer(refund, nobodys)
    assert spend.status_code == 402  # Mallory's own balance is 5.00
    assert len(FakePayControl(f"{suite.fakepay}/_control").ledger(paid.json()["id"])) == 1

    # Nothing of Alice's changed.
    assert [
        (await alice.api.get(path)).json()
        for path in ("/api/payments", "/api/wallet", "/api/wallet/transactions")
    ] == alice_before
    assert (await alice.api.get(f"/invoice/{pending['id']}")).json()["invoiceStatus"] == "PENDING"


async def request_email(suite: Suite, owner_id: str) -> tuple[str, str]:
    """An invoice email asked for as the invoice service asks: invoice.send_requested on
    invoice.events. The send id and the invoice id."""
    send_id, invoice_id = str(uuid.uuid4()), str(uuid.uuid4())
    event = CloudEvent(
        source="/services/invoice",
        type="invoice.send_requested",
        subject=owner_id,
        data={
            "send_id": send_id,
            "invoice_id": invoice_id,
            "owner_id": owner_id,
            "recipient": {"email": "client@example.com", "name": "Client"},
            "reply_to": None,
            "sender_name": "Alice",
            "subject": "Invoice INV-7",
            "message": None,
            "invoice": {
                "number": "INV-7",
                "description": "Audit",
                "amount": "80.00",
                "currency": "USD",
                "due_date": "2026-12-31",
                "status": "PENDING",
                "client_name": "Client",
            },
            "pdf": {
                "bucket": "pdfs",
                "key": f"{owner_id}/{invoice_id}.pdf",
                "etag": '"0"',
                "filename": "INV-7.pdf",
                "size": 1,
            },
            "fee": {"reference": f"email-send:{send_id}", "amount": "0.50", "currency": "USD"},
            "requested_at": "2026-11-30T05:00:00Z",
        },
    )
    await ensure_topics(suite.kafka_bootstrap, ["invoice.events"])
    producer = create_producer(suite.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            "invoice.events",
            event.model_dump_json().encode(),
            key=owner_id.encode(),
            headers=[("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())],
        )
    finally:
        await producer.stop()
    return send_id, invoice_id


async def test_a_second_user_cannot_reach_the_first_users_emails(
    suite: Suite, sign_in_as: Any
) -> None:
    alice = await sign_in_as(f"alice-{uuid.uuid4().hex[:8]}@example.com")
    mallory = await sign_in_as(f"mallory-{uuid.uuid4().hex[:8]}@example.com")
    send_id, invoice_id = await request_email(suite, alice.user_id)
    # The email worker queues it from the event: Alice sees it through the gateway.
    for _ in range(150):
        mine = await alice.api.get(f"/api/emails/{send_id}")
        if mine.status_code == 200:
            break
        await asyncio.sleep(0.2)
    assert mine.status_code == 200, mine.text
    of_invoice = await alice.api.get(f"/api/invoices/{invoice_id}/emails")
    assert [e["id"] for e in of_invoice.json()["items"]] == [send_id]
    alice_before = (await alice.api.get(f"/api/emails/{send_id}")).json()
    m = mallory.api

    # Named by id: the same answer as for an id that does not exist.
    assert same_answer(
        await m.get(f"/api/emails/{send_id}"), await m.get(f"/api/emails/{uuid.uuid4()}")
    )
    # Lists hold only the caller's own: nothing of Alice's, by invoice or at all.
    assert (await m.get("/api/emails")).json()["items"] == []
    assert (await m.get(f"/api/invoices/{invoice_id}/emails")).json()["items"] == []
    # A made-up delivery report, through the gateway, is refused and changes nothing.
    for provider in ("sendgrid", "mailgun", "ses"):
        forged = await m.post(
            f"/webhooks/{provider}",
            json=[{"event": "bounce", "send_id": send_id, "sg_event_id": "x"}],
        )
        assert forged.status_code == 401, (provider, forged.text)
        assert forged.headers["content-type"] == "application/problem+json"
    after = (await alice.api.get(f"/api/emails/{send_id}")).json()
    assert after["status"] != "bounced"
    assert after["history"][: len(alice_before["history"])] == alice_before["history"]


async def test_a_second_user_cannot_reach_the_first_users_billing_connection(
    suite: Suite, sign_in_as: Any
) -> None:
    alice = await sign_in_as(f"alice-{uuid.uuid4().hex[:8]}@example.com")
    mallory = await sign_in_as(f"mallory-{uuid.uuid4().hex[:8]}@example.com")
    # Nothing listens on port 9: the sync parks, which changes nothing here.
    created = await alice.api.post(
        "/api/sync/connections",
        json={"base_url": "http://127.0.0.1:9", "api_key": "sk_alices_secret_key"},
    )
    assert created.status_code == 201, created.text
    connection_id = created.json()["id"]
    alice_status = (await alice.api.get("/api/sync/status")).json()
    m = mallory.api

    assert same_answer(
        await m.delete(f"/api/sync/connections/{connection_id}"),
        await m.delete(f"/api/sync/connections/{uuid.uuid4()}"),
    )
    assert (await m.get("/api/sync/connections")).json()["items"] == []
    assert (await m.get("/api/sync/status")).status_code == 404
    assert (await m.post("/api/sync/runs")).status_code == 404
    # Mallory's own connection is hers alone, and does not touch Alice's.
    theirs = await m.post(
        "/api/sync/connections",
        json={"base_url": "http://127.0.0.1:9", "api_key": "sk_mallorys_own_key"},
    )
    assert theirs.status_code == 201
    assert theirs.json()["id"] != connection_id

    listed = (await alice.api.get("/api/sync/connections")).json()["items"]
    assert [c["id"] for c in listed] == [connection_id]
    assert (await alice.api.get("/api/sync/status")).json()["connection_id"] == (
        alice_status["connection_id"]
    )
    assert "sk_alices_secret_key" not in created.text


async def test_a_second_user_cannot_reach_the_first_users_payment_methods_or_outcomes(
    suite: Suite, sign_in_as: Any
) -> None:
    alice = await sign_in_as(f"alice-{uuid.uuid4().hex[:8]}@example.com")
    mallory = await sign_in_as(f"mallory-{uuid.uuid4().hex[:8]}@example.com")
    client = (
        await alice.api.post("/api/clients", json={"name": "Eta", "email": "ap@eta.example"})
    ).json()
    saved = await alice.api.post(
        "/api/payment-methods",
        json={"client_id": client["id"], "card": CARD, "autopay_consent": True},
    )
    assert saved.status_code == 201, saved.text
    method_id = saved.json()["id"]
    m = mallory.api

    assert (await m.get("/api/payment-methods")).json()["items"] == []
    listed = await m.get("/api/payment-methods", params={"client_id": client["id"]})
    assert listed.json()["items"] == []
    assert same_answer(
        await m.delete(f"/api/payment-methods/{method_id}"),
        await m.delete(f"/api/payment-methods/{uuid.uuid4()}"),
    )
    # A run's page shows only the caller's own invoices and counts.
    for run in (await m.get("/api/billing-runs")).json()["items"]:
        assert run["counts"] == {}
        detail = (await m.get(f"/api/billing-runs/{run['id']}")).json()
        assert (detail["items"], detail["counts"]) == ([], {})

    [still] = (await alice.api.get("/api/payment-methods")).json()["items"]
    assert still["id"] == method_id
    assert still["card"]["number"] == "123456********5678"
