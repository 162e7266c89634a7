"""The wallet: top-ups by card, fees and refunds, an append-only ledger that never goes
below zero, each change applied once, and its events in order."""

import asyncio
import uuid
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payment.models import WalletAccount, WalletEntry
from payment.service import Charging, reconcile_unsettled
from simulators.testing import FakePayControl

from .factories import (
    DECLINED_CARD,
    MASKED_SEED_CARD,
    age_payments_by_id,
    card,
    debit,
    staged_events,
    top_up,
)


async def _balances(api: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, str]]:
    response = await api.get("/api/wallet", headers=auth)
    assert response.status_code == 200
    return list(response.json()["balances"])


async def test_a_top_up_charges_the_card_and_credits_the_wallet(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    response = await top_up(api, auth, "25.00")

    assert response.status_code == 201, response.text
    body = response.json()
    payment = body["payment"]
    assert payment["kind"] == "topup"
    assert payment["invoice_id"] is None
    assert payment["status"] == "succeeded"
    assert payment["card"] == {"number": MASKED_SEED_CARD, "expiry": "01-2040", "name": "J Doe"}
    assert body["transaction"]["type"] == "topup"
    assert body["transaction"]["amount"] == "25.00"
    assert body["transaction"]["balance_after"] == "25.00"
    assert body["transaction"]["reference"] == payment["id"]
    assert body["balance"] == {"currency": "USD", "balance": "25.00"}
    assert await _balances(api, auth) == [{"currency": "USD", "balance": "25.00"}]
    # A top-up's transactionId at the provider is its payment id.
    assert len(fakepay.ledger(payment["id"])) == 1


async def test_an_owner_without_a_wallet_has_no_balances(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    assert await _balances(api, auth) == []


async def test_balances_are_kept_per_currency(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    await top_up(api, auth, "25.00")
    await top_up(api, auth, "7.50", currency="EUR")
    await top_up(api, auth, "5.00")

    assert await _balances(api, auth) == [
        {"currency": "EUR", "balance": "7.50"},
        {"currency": "USD", "balance": "30.00"},
    ]


async def test_the_history_is_newest_first_with_the_balance_each_change_left(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    await top_up(api, auth, "25.00")
    fee = await debit(api, auth, "1.50", reference="send-inv-1")
    await top_up(api, auth, "10.00")
    await api.post("/internal/wallet/refunds", json={"reference": "send-inv-1"}, headers=auth)

    first = (await api.get("/api/wallet/transactions?limit=3", headers=auth)).json()
    rest = (
        await api.get(
            "/api/wallet/transactions", params={"cursor": first["next_cursor"]}, headers=auth
        )
    ).json()

    assert fee.status_code == 201
    rows = [(t["type"], t["amount"], t["balance_after"]) for t in first["items"] + rest["items"]]
    assert rows == [
        ("refund", "1.50", "35.00"),
        ("topup", "10.00", "33.50"),
        ("fee", "-1.50", "23.50"),
        ("topup", "25.00", "25.00"),
    ]
    assert rest["next_cursor"] is None
    assert first["items"][0]["reference"] == "send-inv-1"
    assert first["items"][0]["description"] == "Refund: Invoice sent by email"


async def test_concurrent_debits_never_take_the_balance_below_zero(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    await top_up(api, auth, "10.00")

    responses = await asyncio.gather(*(debit(api, auth, "1.00") for _ in range(20)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 10 + [402] * 10, [r.text for r in responses]
    assert await _balances(api, auth) == [{"currency": "USD", "balance": "0.00"}]
    async with sessionmaker() as session:
        entries = (
            await session.scalars(
                select(WalletEntry).where(WalletEntry.owner_id == owner).order_by(WalletEntry.id)
            )
        ).all()
    assert [e.sequence for e in entries] == list(range(1, 12))
    assert [e.balance_after for e in entries] == [Decimal(n) for n in range(10, -1, -1)]


async def test_concurrent_top_ups_and_debits_keep_the_ledger_whole(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    await top_up(api, auth, "5.00")

    responses = await asyncio.gather(
        *(top_up(api, auth, "1.00") for _ in range(5)),
        *(debit(api, auth, "1.00") for _ in range(10)),
    )

    debited = sum(1 for r in responses[5:] if r.status_code == 201)
    assert all(r.status_code in (201, 402) for r in responses)
    [balance] = await _balances(api, auth)
    assert Decimal(balance["balance"]) == Decimal(10 - debited)
    async with sessionmaker() as session:
        total = await session.scalar(
            select(func.sum(WalletEntry.amount)).where(WalletEntry.owner_id == owner)
        )
    assert total == Decimal(balance["balance"])


async def test_the_same_debit_reference_is_applied_once(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    await top_up(api, auth, "10.00")

    first = await debit(api, auth, "2.00", reference="send-42")
    again = await debit(api, auth, "2.00", reference="send-42")
    together = await asyncio.gather(
        *(debit(api, auth, "3.00", reference="send-43") for _ in range(5))
    )

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert sorted(r.status_code for r in together) == [200, 200, 200, 200, 201]
    assert await _balances(api, auth) == [{"currency": "USD", "balance": "5.00"}]


async def test_a_reference_reused_for_another_amount_is_409(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    await top_up(api, auth, "10.00")
    await debit(api, auth, "2.00", reference="send-7")

    response = await debit(api, auth, "3.00", reference="send-7")

    assert response.status_code == 409
    assert await _balances(api, auth) == [{"currency": "USD", "balance": "8.00"}]


async def test_a_debit_larger_than_the_balance_is_402_and_takes_nothing(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    no_wallet = await debit(api, auth, "1.00")
    await top_up(api, auth, "1.00")
    too_much = await debit(api, auth, "1.01")

    for response in (no_wallet, too_much):
        assert response.status_code == 402
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "insufficient_balance"
    assert await _balances(api, auth) == [{"currency": "USD", "balance": "1.00"}]


async def test_a_debit_is_refunded_once(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    await top_up(api, auth, "10.00")
    await debit(api, auth, "4.00", reference="send-99")

    refunds = [
        await api.post("/internal/wallet/refunds", json={"reference": "send-99"}, headers=auth)
        for _ in range(2)
    ]
    unknown = await api.post(
        "/internal/wallet/refunds", json={"reference": "never-taken"}, headers=auth
    )

    assert [r.status_code for r in refunds] == [201, 200]
    assert refunds[0].json() == refunds[1].json()
    assert refunds[0].json()["amount"] == "4.00"
    assert unknown.status_code == 404
    assert await _balances(api, auth) == [{"currency": "USD", "balance": "10.00"}]


async def test_wallet_events_carry_exactly_the_contract_data_in_sequence(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    topped = (await top_up(api, auth, "25.00")).json()
    fee = (await debit(api, auth, "2.50", reference="send-1")).json()
    refund = (
        await api.post("/internal/wallet/refunds", json={"reference": "send-1"}, headers=auth)
    ).json()

    events = [
        e for e in await staged_events(sessionmaker, str(owner)) if e.type.startswith("wallet.")
    ]

    assert [e.type for e in events] == ["wallet.credited", "wallet.debited", "wallet.credited"]
    assert all(e.subject == str(owner) and e.source == "/services/payment" for e in events)
    assert [e.data for e in events] == [
        {
            "owner_id": str(owner),
            "transaction_id": topped["transaction"]["id"],
            "currency": "USD",
            "amount": "25.00",
            "balance_after": "25.00",
            "sequence": 1,
            "reference": topped["payment"]["id"],
        },
        {
            "owner_id": str(owner),
            "transaction_id": fee["id"],
            "currency": "USD",
            "amount": "2.50",
            "balance_after": "22.50",
            "sequence": 2,
            "reference": "send-1",
        },
        {
            "owner_id": str(owner),
            "transaction_id": refund["id"],
            "currency": "USD",
            "amount": "2.50",
            "balance_after": "25.00",
            "sequence": 3,
            "reference": "send-1",
        },
    ]


async def test_a_declined_top_up_is_402_and_credits_nothing(
    api: httpx.AsyncClient, auth: dict[str, str], fakepay: FakePayControl
) -> None:
    response = await top_up(api, auth, "25.00", card=card(number=DECLINED_CARD))

    assert response.status_code == 402
    assert await _balances(api, auth) == []


async def test_a_top_up_whose_answer_was_lost_is_credited_when_reconciled(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    charging: Charging,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    fakepay.fault("accept_then_hang", card_last4="1111", delay=5, times=1)

    response = await top_up(api, auth, "25.00", card=card(number="4111 1111 1111 1111"))
    before = await _balances(api, auth)
    await age_payments_by_id(sessionmaker, response.json()["payment_id"], 60)
    await reconcile_unsettled(charging)

    assert response.status_code == 503
    assert before == []
    assert await _balances(api, auth) == [{"currency": "USD", "balance": "25.00"}]
    assert len(fakepay.ledger(response.json()["payment_id"])) == 1


async def test_a_top_up_the_provider_failed_credits_nothing_ever(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    charging: Charging,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    fakepay.fault("error", card_last4="1111", times=1)

    response = await top_up(api, auth, "25.00", card=card(number="4111 1111 1111 1111"))
    await age_payments_by_id(sessionmaker, response.json()["payment_id"], 60)
    await reconcile_unsettled(charging)

    assert response.status_code == 503
    assert await _balances(api, auth) == []
    status = (await api.get(f"/api/payments/{response.json()['payment_id']}", headers=auth)).json()
    assert status["status"] == "failed"


async def test_the_database_refuses_a_negative_balance_whatever_the_code_does(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
    fakepay: FakePayControl,
) -> None:
    await top_up(api, auth, "1.00")

    with pytest.raises(DBAPIError):
        async with sessionmaker() as session, session.begin():
            await session.execute(
                update(WalletAccount)
                .where(WalletAccount.owner_id == owner)
                .values(balance=WalletAccount.balance - 2)
            )

    assert await _balances(api, auth) == [{"currency": "USD", "balance": "1.00"}]
