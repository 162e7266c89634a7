"""Seed 001's card payments end to end, through the gateway: the invoice service pays through
the payment service, which charges FakePay. What FakePay's ledger shows is what was charged;
no process's log and no event on any topic carries a full card number."""

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from simulators.testing import FakePayControl

from .conftest import SignedIn, Suite

SEED_CARD = {"number": "1234567812345678", "name": "J Doe", "expiry": "01-2040"}
WORK_CARD = {"number": "1234 5656 7822 5678", "expiry": "01-2040", "name": "Work Card"}
# A card FakePay always declines (its last four digits), to have refusals in the logs too.
DECLINED_CARD = {"number": "4000 1234 5678 0002", "expiry": "01-2040", "name": "J Doe"}
FULL_NUMBERS = [
    "1234567812345678",
    "1234 5656 7822 5678",
    "1234565678225678",
    "4000 1234 5678 0002",
    "4000123456780002",
]


def ledger(suite: Suite, invoice_id: str) -> int:
    """How many charges FakePay took for this invoice (its transaction id)."""
    return len(FakePayControl(f"{suite.fakepay}/_control").ledger(invoice_id))


async def new_client(user: SignedIn, name: str, email: str) -> int:
    response = await user.api.post("/api/clients", json={"name": name, "email": email})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def pending_invoice(user: SignedIn, customer_id: int, amount: float = 299.99) -> str:
    response = await user.api.post(
        "/invoice",
        json={
            "jobDescription": "Building Payment System",
            "amount": amount,
            "customerId": customer_id,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["invoiceStatus"] == "PENDING"
    return str(response.json()["id"])


async def test_invoices_are_paid_by_card_through_the_gateway(suite: Suite, sign_in_as: Any) -> None:
    alice = await sign_in_as(f"alice-{uuid.uuid4().hex[:8]}@example.com")
    john = await new_client(alice, "John Doe", "john.doe@example.com")
    seth = await new_client(alice, "Seth Hall", "seth.hall@paymark.co.nz")

    created = await alice.api.post(
        "/invoice",
        json={
            "jobDescription": "Software License Fee",
            "amount": 99.99,
            "customerId": john,
            "card": SEED_CARD,
        },
    )
    pending = await pending_invoice(alice, seth)
    paid = await alice.api.post(f"/invoice/pay/{pending}", json=WORK_CARD)

    assert created.status_code == 201, created.text
    first = created.json()["id"]
    assert created.json() == {
        "id": first,
        "jobDescription": "Software License Fee",
        "customerId": john,
        "amount": 99.99,
        "card": {"number": "123456********5678", "expiry": "01-2040", "name": "J Doe"},
        "customerName": "John Doe",
        "customerEmail": "john.doe@example.com",
        "invoiceStatus": "PAID",
    }
    assert paid.status_code == 201, paid.text
    assert paid.json() == {
        "id": pending,
        "jobDescription": "Building Payment System",
        "customerId": seth,
        "amount": 299.99,
        "card": {"number": "123456********5678", "expiry": "01-2040", "name": "Work Card"},
        "customerName": "Seth Hall",
        "customerEmail": "seth.hall@paymark.co.nz",
        "invoiceStatus": "PAID",
    }
    assert (ledger(suite, first), ledger(suite, pending)) == (1, 1)
    # Read your writes, through the gateway, at once.
    for invoice_id in (first, pending):
        read = await alice.api.get(f"/invoice/{invoice_id}")
        assert read.json()["invoiceStatus"] == "PAID"
    listed = (await alice.api.get("/api/invoices")).json()["items"]
    assert {(i["id"], i["status"]) for i in listed} == {(first, "paid"), (pending, "paid")}
    payments = (await alice.api.get("/api/payments")).json()["items"]
    assert {(p["invoice_id"], p["status"], p["amount"]) for p in payments} == {
        (first, "succeeded", "99.99"),
        (pending, "succeeded", "299.99"),
    }
    assert {p["card"]["number"] for p in payments} == {"123456********5678"}


async def test_ten_payments_of_one_invoice_at_once_charge_it_once(
    suite: Suite, sign_in_as: Any
) -> None:
    bob = await sign_in_as(f"bob-{uuid.uuid4().hex[:8]}@example.com")
    invoice_id = await pending_invoice(bob, await new_client(bob, "Globex", "ap@globex.example"))

    responses = await asyncio.gather(
        *(bob.api.post(f"/invoice/pay/{invoice_id}", json=WORK_CARD) for _ in range(10))
    )

    assert sorted(r.status_code for r in responses) == [201] + [409] * 9, [
        r.text for r in responses
    ]
    assert all(
        r.headers["content-type"] == "application/problem+json"
        for r in responses
        if r.status_code == 409
    )
    assert ledger(suite, invoice_id) == 1
    assert (await bob.api.get(f"/invoice/{invoice_id}")).json()["invoiceStatus"] == "PAID"
    payments = (await bob.api.get("/api/payments")).json()["items"]
    assert [p["invoice_id"] for p in payments] == [invoice_id]


async def test_no_log_line_and_no_event_carries_a_card_number(
    suite: Suite, sign_in_as: Any
) -> None:
    carol = await sign_in_as(f"carol-{uuid.uuid4().hex[:8]}@example.com")
    customer = await new_client(carol, "Initech", "ap@initech.example")
    # A payment that succeeds, one that is declined, one with a malformed card, a top-up.
    paid = await carol.api.post(
        "/invoice",
        json={"jobDescription": "Work", "amount": 12.5, "customerId": customer, "card": SEED_CARD},
    )
    declined_id = await pending_invoice(carol, customer)
    declined = await carol.api.post(f"/invoice/pay/{declined_id}", json=DECLINED_CARD)
    malformed = await carol.api.post(
        f"/invoice/pay/{declined_id}", json={**WORK_CARD, "expiry": "2040-01"}
    )
    topup = await carol.api.post(
        "/api/wallet/topups", json={"amount": "20.00", "currency": "USD", "card": WORK_CARD}
    )
    assert [paid.status_code, declined.status_code, malformed.status_code] == [201, 402, 422]
    assert topup.status_code == 201, topup.text
    paid_id = paid.json()["id"]

    events = await read_every_topic(
        suite.kafka_bootstrap,
        until=lambda value: paid_id.encode() in value and b"invoice.status_changed" in value,
    )

    assert any(b"payment.succeeded" in value for value in events)
    assert [n for n in FULL_NUMBERS if any(n.encode() in value for value in events)] == []
    logs = {
        path.relative_to(suite.logs): path.read_bytes()
        for path in suite.logs.rglob("*")
        if path.is_file() and not path.name.endswith(".pid")
    }
    assert any(paid_id.encode() in text for text in logs.values()), "the payment was logged"
    leaks = [
        (str(name), number)
        for name, text in logs.items()
        for number in FULL_NUMBERS
        if number.encode() in text
    ]
    assert leaks == []


async def read_every_topic(
    bootstrap: str, until: Callable[[bytes], bool], within_seconds: float = 30
) -> list[bytes]:
    """Every message on every topic, from the start, once one matching `until` is among them
    (the relays publish after the commit, so the last events may take a moment)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(within_seconds):
            while True:
                values = await _read_all(consumer)
                if any(until(value) for value in values):
                    return values
                await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


async def _read_all(consumer: AIOKafkaConsumer) -> list[bytes]:
    topics = await consumer.topics()
    partitions = [
        TopicPartition(topic, partition)
        for topic in topics
        for partition in consumer.partitions_for_topic(topic) or ()
    ]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    values: list[bytes] = []
    # Read until a fetch comes back empty: the topics hold what was published so far.
    while batches := await consumer.getmany(timeout_ms=1000, max_records=1000):
        for records in batches.values():
            values += [record.value for record in records if record.value is not None]
    return values
