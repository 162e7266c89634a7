"""Idempotency keys through the payment API: a top-up sent again with its key is the same
top-up, charged once, even when the request runs again after a crash lost its stored answer."""

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.idempotency import KeyState
from common.outbox import utcnow
from payment.models import IdempotencyKey, Payment
from simulators.testing import FakePayControl

from .factories import age_payments_by_id, card

# FakePay's faults below are aimed at this card, so no other test's charge meets them.
FAULTY_CARD = "4111 1111 1111 1111"


async def _top_up(
    api: httpx.AsyncClient, auth: dict[str, str], key: str, amount: str = "25.00", **overrides: Any
) -> httpx.Response:
    body = {"amount": amount, "currency": "USD", "card": card(), **overrides}
    return await api.post("/api/wallet/topups", json=body, headers={**auth, "Idempotency-Key": key})


async def _charges(
    fakepay: FakePayControl, sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID
) -> int:
    """What FakePay took for any of the owner's payments: the proof of what was charged."""
    async with sessionmaker() as session:
        ids = set(await session.scalars(select(Payment.id).where(Payment.owner_id == owner)))
    return sum(1 for entry in fakepay.ledger() if entry.transaction_id in {str(i) for i in ids})


async def _balance(api: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, str]]:
    return list((await api.get("/api/wallet", headers=auth)).json()["balances"])


async def _lose_stored_answer(
    sessionmaker: async_sessionmaker[AsyncSession], owner: uuid.UUID, key: str
) -> None:
    """Leave the key as a process killed after the top-up committed leaves it: in progress,
    no answer stored, its lock run out, so the next request with it runs the endpoint again."""
    async with sessionmaker() as session, session.begin():
        result = await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.owner_id == owner, IdempotencyKey.key == key.encode())
            .values(
                state=KeyState.IN_PROGRESS,
                locked_until=utcnow() - timedelta(seconds=1),
                response_status=None,
                response_headers=None,
                response_body=None,
            )
        )
    assert isinstance(result, CursorResult)
    assert result.rowcount == 1


async def test_a_replayed_top_up_answers_the_first_reply_and_charges_once(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    key = f"topup-{uuid.uuid4()}"

    first = await _top_up(api, auth, key)
    again = await _top_up(api, auth, key)

    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await _charges(fakepay, sessionmaker, owner) == 1
    assert await _balance(api, auth) == [{"currency": "USD", "balance": "25.00"}]


async def test_a_top_up_run_again_after_its_answer_was_lost_is_not_charged_again(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    key = f"topup-{uuid.uuid4()}"
    first = await _top_up(api, auth, key)
    await _lose_stored_answer(sessionmaker, owner, key)

    again = await _top_up(api, auth, key)

    assert first.status_code == again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers  # the endpoint ran again
    assert again.json() == first.json()
    assert await _charges(fakepay, sessionmaker, owner) == 1
    assert await _balance(api, auth) == [{"currency": "USD", "balance": "25.00"}]


async def test_a_top_up_with_another_key_is_another_top_up(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    key = f"topup-{uuid.uuid4()}"
    first = await _top_up(api, auth, key)
    await _lose_stored_answer(sessionmaker, owner, key)

    other = await _top_up(api, auth, f"topup-{uuid.uuid4()}")

    assert first.status_code == other.status_code == 201, other.text
    assert other.json()["payment"]["id"] != first.json()["payment"]["id"]
    assert await _charges(fakepay, sessionmaker, owner) == 2
    assert await _balance(api, auth) == [{"currency": "USD", "balance": "50.00"}]


async def test_a_key_sent_with_another_top_up_is_422_and_charges_nothing(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    key = f"topup-{uuid.uuid4()}"
    await _top_up(api, auth, key)
    # The key's row gone (a 5xx frees it, the clean-up deletes it after 24 hours), the
    # middleware no longer knows the first body: the top-up's own key check answers.
    async with sessionmaker() as session, session.begin():
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.owner_id == owner))

    other = await _top_up(api, auth, key, "30.00")

    assert other.status_code == 422, other.text
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await _charges(fakepay, sessionmaker, owner) == 1
    assert await _balance(api, auth) == [{"currency": "USD", "balance": "25.00"}]


async def test_a_top_up_whose_answer_was_lost_is_settled_before_a_retry_with_its_key(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    # FakePay takes the charge, then answers too late: the first request hears nothing.
    fakepay.fault("accept_then_hang", card_last4="1111", delay=5, times=1)
    key = f"topup-{uuid.uuid4()}"

    lost = await _top_up(api, auth, key, card=card(number=FAULTY_CARD))
    retry = await _top_up(api, auth, key, card=card(number=FAULTY_CARD))

    assert lost.status_code == 503  # not kept by the middleware: the key may be sent again
    assert retry.status_code == 201, retry.text
    assert retry.json()["payment"]["id"] == lost.json()["payment_id"]
    assert await _charges(fakepay, sessionmaker, owner) == 1
    assert await _balance(api, auth) == [{"currency": "USD", "balance": "25.00"}]


async def test_a_top_up_that_charged_nothing_may_be_tried_again_with_its_key(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    # FakePay fails with a 5xx: nothing is charged, but the service cannot know that yet.
    fakepay.fault("error", card_last4="1111", times=1)
    key = f"topup-{uuid.uuid4()}"

    failed = await _top_up(api, auth, key, card=card(number=FAULTY_CARD))
    early = await _top_up(api, auth, key, card=card(number=FAULTY_CARD))
    await age_payments_by_id(sessionmaker, failed.json()["payment_id"], 60)
    later = await _top_up(api, auth, key, card=card(number=FAULTY_CARD))

    assert failed.status_code == 503
    # Within the provider's grace period "no such charge" proves nothing: ask again later.
    assert early.status_code == 503, early.text
    assert early.json()["code"] == "payment_in_progress"
    assert early.json()["payment_id"] == failed.json()["payment_id"]
    assert "retry-after" in early.headers
    # Settled as not charged, the first attempt frees the key for a new one.
    assert later.status_code == 201, later.text
    assert later.json()["payment"]["id"] != failed.json()["payment_id"]
    first_attempt = await api.get(f"/api/payments/{failed.json()['payment_id']}", headers=auth)
    assert first_attempt.json()["status"] == "failed"
    assert await _charges(fakepay, sessionmaker, owner) == 1
    assert await _balance(api, auth) == [{"currency": "USD", "balance": "25.00"}]
