"""FakePay run as its own process, driven over HTTP as the payment service will drive it."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from simulators.testing import FakePayControl, FakePayServer

SEED_CARD = {"number": "1234567812345678", "name": "J Doe", "expiry": "01-2040"}
SEED_WORK_CARD = {"number": "1234 5656 7822 5678", "expiry": "01-2040", "name": "Work Card"}
OTHER_CARD = {"number": "4111 1111 1111 1111", "expiry": "12-2039", "name": "A Client"}


@pytest.fixture(scope="module")
def fakepay() -> Iterator[FakePayServer]:
    with FakePayServer() as server:
        yield server


@pytest.fixture
def control(fakepay: FakePayServer) -> Iterator[FakePayControl]:
    client = fakepay.control_client()
    client.clear()
    yield client
    client.clear()


@pytest.fixture
async def http(fakepay: FakePayServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fakepay.base_url, timeout=10) as client:
        yield client


def tid() -> str:
    return str(uuid.uuid4())


def charge(card: dict[str, str], transaction_id: str, **extra: Any) -> dict[str, Any]:
    return {"card": card, "transactionId": transaction_id, **extra}


def months_from_now(months: int) -> str:
    today = datetime.now(UTC)
    index = today.year * 12 + today.month - 1 + months
    return f"{index % 12 + 1:02d}-{index // 12}"


@pytest.mark.parametrize("card", [SEED_CARD, SEED_WORK_CARD])
async def test_the_seed_cards_are_accepted_with_the_seed_message(
    http: httpx.AsyncClient, control: FakePayControl, card: dict[str, str]
) -> None:
    transaction_id = tid()
    # Exactly the seed's FakePayRequest: a card and a transactionId, nothing else.
    response = await http.post("/fakepay", json=charge(card, transaction_id))

    assert response.status_code == 200
    body = response.json()
    assert body["message"] == "Payment processed successfully"
    assert body["transactionId"] == transaction_id
    assert body["chargeId"].startswith("ch_")
    [entry] = control.ledger(transaction_id)
    assert entry.charge_id == body["chargeId"]
    assert entry.card.number == "123456********5678"
    assert entry.card.name == card["name"]
    assert (entry.amount, entry.currency) == (None, None)


@pytest.mark.parametrize("amount", ["99.99", 99.99, 100, "0.01"])
async def test_amounts_are_kept_exactly(
    http: httpx.AsyncClient, control: FakePayControl, amount: Any
) -> None:
    transaction_id = tid()
    response = await http.post(
        "/fakepay", json=charge(SEED_CARD, transaction_id, amount=amount, currency="USD")
    )

    assert response.status_code == 200
    [entry] = control.ledger(transaction_id)
    assert entry.amount == Decimal(str(amount))
    assert entry.currency == "USD"


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"number": "1234 5678 1234 567a"}, "invalid_card", "card.number"),
        ({"number": "1234-5678-1234-5678"}, "invalid_card", "card.number"),
        ({"number": "12345678901"}, "invalid_card", "card.number"),
        ({"number": "12345678901234567890"}, "invalid_card", "card.number"),
        ({"number": "   "}, "invalid_card", "card.number"),
        ({"number": 1234567812345678}, "invalid_request", "card.number"),
        ({"expiry": "1-2040"}, "invalid_expiry", "card.expiry"),
        ({"expiry": "01/2040"}, "invalid_expiry", "card.expiry"),
        ({"expiry": "13-2040"}, "invalid_expiry", "card.expiry"),
        ({"expiry": "00-2040"}, "invalid_expiry", "card.expiry"),
        ({"expiry": "01-40"}, "invalid_expiry", "card.expiry"),
        ({"expiry": "01-2020"}, "expired_card", "card.expiry"),
        ({"expiry": months_from_now(-1)}, "expired_card", "card.expiry"),
        ({"name": ""}, "invalid_name", "card.name"),
        ({"name": "   "}, "invalid_name", "card.name"),
    ],
)
async def test_bad_cards_are_refused_without_echoing_the_number(
    http: httpx.AsyncClient,
    control: FakePayControl,
    change: dict[str, Any],
    code: str,
    field: str,
) -> None:
    card = {**SEED_WORK_CARD, "cvv": "987", **change}
    response = await http.post("/fakepay", json=charge(card, tid(), amount="10.00"))

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["field"] == field
    assert response.json()["message"]
    number = str(card["number"])
    for secret in {number.strip(), number.replace(" ", ""), "5656 7822", "56567822", "987"}:
        assert not secret or secret not in response.text
    assert control.ledger() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (charge(SEED_CARD, "t", amount="0"), "amount"),
        (charge(SEED_CARD, "t", amount=-5), "amount"),
        (charge(SEED_CARD, "t", amount="1.001"), "amount"),
        (charge(SEED_CARD, "t", amount="ten"), "amount"),
        (charge(SEED_CARD, "t", amount="NaN"), "amount"),
        (charge(SEED_CARD, "t", amount=True), "amount"),
        (charge(SEED_CARD, "t", currency="usd"), "currency"),
        (charge(SEED_CARD, ""), "transactionId"),
        ({"card": SEED_CARD}, "transactionId"),
        ({"transactionId": "t"}, "card"),
        ({"card": {"number": "1234567812345678"}, "transactionId": "t"}, "card.expiry"),
        ([SEED_CARD], "body"),
    ],
)
async def test_bad_requests_are_refused(http: httpx.AsyncClient, body: Any, field: str) -> None:
    response = await http.post("/fakepay", json=body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert response.json()["field"] == field
    assert "1234567812345678" not in response.text


async def test_a_body_that_is_not_json_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/fakepay", content=b"number=1234567812345678")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert "1234567812345678" not in response.text


async def test_a_card_expiring_this_month_is_still_good(http: httpx.AsyncClient) -> None:
    card = {**SEED_CARD, "expiry": months_from_now(0)}
    response = await http.post("/fakepay", json=charge(card, tid()))

    assert response.status_code == 200


async def test_a_decline_by_card_answers_402_and_charges_nothing(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    control.fault("decline", card_last4="5678")
    declined, other = tid(), tid()

    response = await http.post("/fakepay", json=charge(SEED_CARD, declined, amount="5.00"))
    accepted = await http.post("/fakepay", json=charge(OTHER_CARD, other, amount="5.00"))

    assert response.status_code == 402
    assert response.json() == {"message": "Insufficient funds", "code": "insufficient_funds"}
    assert accepted.status_code == 200
    assert [entry.transaction_id for entry in control.ledger()] == [other]


async def test_an_error_by_transaction_answers_503_and_charges_nothing(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    failing, other = tid(), tid()
    control.fault("error", transaction_id=failing)

    response = await http.post("/fakepay", json=charge(SEED_CARD, failing))
    accepted = await http.post("/fakepay", json=charge(SEED_CARD, other))

    assert response.status_code == 503
    assert response.json() == {"message": "Service unavailable"}
    assert accepted.status_code == 200
    assert [entry.transaction_id for entry in control.ledger()] == [other]


async def test_a_decline_by_card_and_transaction_needs_both_to_match(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    target = tid()
    control.fault("decline", card_last4="1111", transaction_id=target)

    same_card = await http.post("/fakepay", json=charge(OTHER_CARD, tid()))
    same_transaction = await http.post("/fakepay", json=charge(SEED_CARD, target))
    both = await http.post("/fakepay", json=charge(OTHER_CARD, target))

    assert [same_card.status_code, same_transaction.status_code] == [200, 200]
    assert both.status_code == 402


async def test_a_hang_gives_a_client_that_times_out_no_answer_and_charges_nothing(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    transaction_id = tid()
    control.fault("hang", transaction_id=transaction_id, delay=1.5)

    with pytest.raises(httpx.ReadTimeout):
        await http.post("/fakepay", json=charge(SEED_CARD, transaction_id), timeout=0.3)

    assert control.ledger() == []
    assert (await http.get(f"/fakepay/{transaction_id}")).status_code == 404


async def test_a_hang_ends_in_503(http: httpx.AsyncClient, control: FakePayControl) -> None:
    control.fault("hang", card_last4="5678", delay=0.3)

    started = time.monotonic()
    response = await http.post("/fakepay", json=charge(SEED_CARD, tid()))

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 503
    assert control.ledger() == []


async def test_a_slow_provider_answers_late_but_charges(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    transaction_id = tid()
    control.fault("slow", card_last4="5678", delay=0.4)

    started = time.monotonic()
    response = await http.post("/fakepay", json=charge(SEED_CARD, transaction_id))

    assert time.monotonic() - started >= 0.4
    assert response.status_code == 200
    assert len(control.ledger(transaction_id)) == 1


async def test_accept_then_hang_charges_a_client_that_times_out(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    transaction_id = tid()
    control.fault("accept_then_hang", transaction_id=transaction_id, delay=1.5)

    with pytest.raises(httpx.ReadTimeout):
        await http.post(
            "/fakepay", json=charge(SEED_CARD, transaction_id, amount="42.50"), timeout=0.3
        )

    # The client never learned of the charge; the look-up is how it finds out.
    [entry] = control.ledger(transaction_id)
    status = await http.get(f"/fakepay/{transaction_id}")
    assert status.status_code == 200
    assert status.json()["chargeId"] == entry.charge_id
    assert status.json()["amount"] == "42.50"


async def test_accept_then_hang_answers_200_after_the_delay(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    transaction_id = tid()
    control.fault("accept_then_hang", card_last4="5678", delay=0.3)

    response = await http.post("/fakepay", json=charge(SEED_CARD, transaction_id))

    assert response.status_code == 200
    [entry] = control.ledger(transaction_id)
    assert response.json()["chargeId"] == entry.charge_id


async def test_a_fault_with_seconds_expires(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    control.fault("error", seconds=0.6)

    during = await http.post("/fakepay", json=charge(SEED_CARD, tid()))
    await asyncio.sleep(0.8)
    after = await http.post("/fakepay", json=charge(SEED_CARD, tid()))

    assert during.status_code == 503
    assert after.status_code == 200


async def test_a_fault_with_times_hits_only_the_next_requests(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    control.fault("error", card_last4="5678", times=2)

    codes = [
        (await http.post("/fakepay", json=charge(SEED_CARD, tid()))).status_code for _ in range(3)
    ]

    assert codes == [503, 503, 200]


async def test_the_newest_matching_fault_wins(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    control.fault("error")
    control.fault("decline", card_last4="1111")

    declined = await http.post("/fakepay", json=charge(OTHER_CARD, tid()))
    failed = await http.post("/fakepay", json=charge(SEED_CARD, tid()))

    assert (declined.status_code, failed.status_code) == (402, 503)


async def test_clearing_faults_restores_service(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    control.fault("error")
    control.clear_faults()

    response = await http.post("/fakepay", json=charge(SEED_CARD, tid()))

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("number", "status"), [("4000 0000 0000 0002", 402), ("4000 0000 0000 0119", 503)]
)
async def test_the_fixed_test_cards(
    http: httpx.AsyncClient, control: FakePayControl, number: str, status: int
) -> None:
    card = {**SEED_CARD, "number": number}
    response = await http.post("/fakepay", json=charge(card, tid()))

    assert response.status_code == status
    assert control.ledger() == []


async def test_the_status_of_an_unknown_transaction_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/fakepay/{tid()}")

    assert response.status_code == 404
    assert response.json() == {"message": "No such transaction"}


async def test_the_ledger_keeps_duplicate_charges(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    transaction_id = tid()
    body = charge(SEED_CARD, transaction_id, amount="10.00", currency="USD")

    first = await http.post("/fakepay", json=body)
    second = await http.post("/fakepay", json=body)

    assert first.status_code == second.status_code == 200
    entries = control.ledger(transaction_id)
    assert [entry.charge_id for entry in entries] == [
        first.json()["chargeId"],
        second.json()["chargeId"],
    ]
    status = await http.get(f"/fakepay/{transaction_id}")
    assert status.json() == {
        "transactionId": transaction_id,
        "status": "succeeded",
        "chargeId": first.json()["chargeId"],
        "amount": "10.00",
        "currency": "USD",
        "charges": 2,
    }


async def test_the_ledger_and_the_log_hold_no_card_number(
    http: httpx.AsyncClient, control: FakePayControl, fakepay: FakePayServer
) -> None:
    cards = {
        "1234 5678 9012 3456 789": "123456********6789",
        "123456789012": "123456********9012",
    }
    for number in cards:
        card = {"number": number, "expiry": "01-2040", "name": "J Doe", "cvv": "4321"}
        assert (await http.post("/fakepay", json=charge(card, tid()))).status_code == 200
    bad = {"number": "9999888877776666x", "expiry": "01-2040", "name": "J Doe"}
    assert (await http.post("/fakepay", json=charge(bad, tid()))).status_code == 400

    assert [entry.card.number for entry in control.ledger()] == list(cards.values())
    raw = (await http.get("/_control/ledger")).text
    log = fakepay.log()
    assert "charge accepted" in log
    for number in [*cards, bad["number"]]:
        for text in (raw, log):
            assert number not in text
            assert number.replace(" ", "") not in text
    # The cvv is neither stored nor logged (its digits could turn up by chance in an id).
    assert "cvv" not in raw.lower()
    assert "cvv" not in log.lower()


async def test_clearing_the_ledger_forgets_transactions(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    transaction_id = tid()
    await http.post("/fakepay", json=charge(SEED_CARD, transaction_id))
    control.clear_ledger()

    assert control.ledger() == []
    assert (await http.get(f"/fakepay/{transaction_id}")).status_code == 404


async def test_the_control_api_refuses_an_unknown_fault(
    http: httpx.AsyncClient, control: FakePayControl
) -> None:
    response = await http.post("/_control/faults", json={"mode": "explode"})

    assert response.status_code == 422
    with pytest.raises(RuntimeError):
        control.fault("decline", card_last4="12345")
