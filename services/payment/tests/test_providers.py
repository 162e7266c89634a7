"""The FakePay adapter against FakePay itself: each answer of the provider becomes one
outcome, and only a clear answer says that nothing was charged."""

import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from payment.providers import (
    CardDetails,
    ChargeRequest,
    FakePayProvider,
    Outcome,
    ProviderUnreachable,
)
from simulators.testing import FakePayControl, FakePayServer

from .factories import SEED_CARD


@pytest.fixture
async def provider(fakepay_server: FakePayServer) -> AsyncIterator[FakePayProvider]:
    async with httpx.AsyncClient() as http:
        yield FakePayProvider(
            http, fakepay_server.url, timeout_seconds=1, connect_timeout_seconds=0.5
        )


def _charge(number: str = SEED_CARD, expiry: str = "01-2040") -> ChargeRequest:
    card = CardDetails(SecretStr(number), expiry, "J Doe", cvv=SecretStr("123"))
    return ChargeRequest(str(uuid.uuid4()), Decimal("12.50"), "USD", card)


async def test_an_accepted_charge_succeeds_with_the_providers_charge_id(
    provider: FakePayProvider, fakepay: FakePayControl
) -> None:
    request = _charge()

    outcome = await provider.charge(request)

    [charged] = fakepay.ledger(request.transaction_id)
    assert outcome.outcome == Outcome.SUCCEEDED
    assert outcome.charge_id == charged.charge_id
    assert str(charged.amount) == "12.50"
    assert charged.card.number == "123456********5678"


async def test_insufficient_funds_is_declined(
    provider: FakePayProvider, fakepay: FakePayControl
) -> None:
    outcome = await provider.charge(_charge("4000000000000002"))

    assert (outcome.outcome, outcome.failure_code) == (Outcome.DECLINED, "insufficient_funds")


async def test_a_card_the_provider_refuses_names_the_field(
    provider: FakePayProvider, fakepay: FakePayControl
) -> None:
    outcome = await provider.charge(_charge(expiry="01-2020"))

    assert outcome.outcome == Outcome.REJECTED
    assert (outcome.failure_code, outcome.field) == ("expired_card", "card.expiry")


async def test_a_provider_error_leaves_the_outcome_unknown(
    provider: FakePayProvider, fakepay: FakePayControl
) -> None:
    request = _charge()
    fakepay.fault("error", transaction_id=request.transaction_id)

    outcome = await provider.charge(request)

    assert outcome.outcome == Outcome.UNKNOWN


async def test_a_hanging_provider_is_given_up_on_after_the_timeout(
    provider: FakePayProvider, fakepay: FakePayControl
) -> None:
    request = _charge()
    fakepay.fault("hang", transaction_id=request.transaction_id, delay=5)

    started = time.monotonic()
    outcome = await provider.charge(request)

    assert outcome.outcome == Outcome.UNKNOWN
    assert time.monotonic() - started < 1.5


async def test_a_provider_that_cannot_be_reached_was_not_sent_anything() -> None:
    async with httpx.AsyncClient() as http:
        down = FakePayProvider(http, "http://127.0.0.1:9/fakepay", 1, 0.5)

        outcome = await down.charge(_charge())
        with pytest.raises(ProviderUnreachable):
            await down.lookup(str(uuid.uuid4()))

    assert (outcome.outcome, outcome.failure_code) == (Outcome.NOT_SENT, "provider_unavailable")


async def test_lookup_finds_a_charge_by_transaction_id_and_only_that(
    provider: FakePayProvider, fakepay: FakePayControl
) -> None:
    request = _charge()
    charged = await provider.charge(request)

    found = await provider.lookup(request.transaction_id)
    missing = await provider.lookup(str(uuid.uuid4()))

    assert found is not None
    assert (found.outcome, found.charge_id) == (Outcome.SUCCEEDED, charged.charge_id)
    assert missing is None


def test_card_details_never_show_the_number() -> None:
    card = CardDetails(SecretStr("1234 5656 7822 5678"), "01-2040", "Work Card", SecretStr("737"))

    assert card.masked_number == "123456********5678"
    assert card.last4 == "5678"
    assert "5656" not in repr(card)
    assert "737" not in repr(card)
