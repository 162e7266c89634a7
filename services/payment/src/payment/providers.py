"""The card payment provider behind one interface, and its FakePay adapter.

The service asks a provider two things: charge this card (`charge`), and did you take a
charge with this transaction id (`lookup`), which settles an attempt whose answer was lost.
A second provider (Stripe) is another class with these two methods.
"""

import asyncio
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from common.logging import get_logger
from common.metrics import PROVIDER_CALLS
from common.types import money_text
from payment.config import PaymentSettings

log = get_logger(__name__)


@dataclass(frozen=True)
class CardDetails:
    """A card as the user typed it. The number and CVV are secrets: their repr is masked, and
    only `masked_number` and `last4` ever leave this object except towards the provider."""

    number: SecretStr
    expiry: str
    name: str
    cvv: SecretStr | None = None

    @property
    def digits(self) -> str:
        return self.number.get_secret_value().replace(" ", "")

    @property
    def masked_number(self) -> str:
        """First six, eight stars, last four: seed 001's `123456********5678`.

        The run of stars is fixed, so the masked form does not reveal the number's length.
        """
        digits = self.digits
        return f"{digits[:6]}********{digits[-4:]}"

    @property
    def last4(self) -> str:
        return self.digits[-4:]


@dataclass(frozen=True)
class ChargeRequest:
    transaction_id: str
    amount: Decimal
    currency: str
    card: CardDetails


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"  # charged
    DECLINED = "declined"  # refused by the bank (insufficient funds): nothing taken
    REJECTED = "rejected"  # the card itself is bad (invalid, expired): nothing taken
    NOT_SENT = "not_sent"  # the request never reached the provider: nothing taken
    UNKNOWN = "unknown"  # sent, but no answer we can trust: may or may not be charged


@dataclass(frozen=True)
class ChargeOutcome:
    outcome: Outcome
    charge_id: str | None = None
    failure_code: str | None = None
    # For REJECTED: the request field the provider blamed (card.number, card.expiry, ...).
    field: str | None = None


@dataclass(frozen=True)
class SavedCharge:
    """A charge of a saved payment method; `transaction_id` is also the idempotency key."""

    token: str
    transaction_id: str
    amount: Decimal
    currency: str
    reference: str


@dataclass(frozen=True)
class SavedCard:
    """What the provider answers for a card it now keeps: its token and the masked card."""

    token: str
    masked_number: str
    last4: str


class ProviderUnreachable(Exception):
    """The provider could not say whether it holds a charge."""


class PaymentProvider(Protocol):
    name: str

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        """Charge the card; never raises for the provider's failures, returns an outcome."""
        ...

    async def lookup(self, transaction_id: str) -> ChargeOutcome | None:
        """The charge taken under this transaction id, None when there is none.

        Raises ProviderUnreachable when the provider cannot tell.
        """
        ...

    async def save_card(self, card: CardDetails) -> SavedCard | ChargeOutcome:
        """Keep the card at the provider; a REJECTED or NOT_SENT outcome when it was not."""
        ...

    async def forget_card(self, token: str) -> None:
        """Remove the card from the provider's vault; raises ProviderUnreachable."""
        ...

    async def charge_saved(self, charge: SavedCharge) -> ChargeOutcome:
        """Charge a saved card, sending transaction_id as the idempotency key: sending the
        same charge again never charges twice. Never raises for the provider's failures."""
        ...


# The fields FakePay may blame, as our API names them; anything else is blamed on the card.
_CARD_FIELDS = {"card.number", "card.expiry", "card.name", "card.cvv"}
_NOT_CHARGED = {"failed", "declined", "canceled"}
_CHARGE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


class FakePayProvider:
    """Seed 001's FakePay: `POST {url}` charges, `GET {url}/{transactionId}` looks up."""

    name = "fakepay"

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        timeout_seconds: float,
        connect_timeout_seconds: float,
    ) -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.timeout = httpx.Timeout(
            timeout_seconds, connect=min(connect_timeout_seconds, timeout_seconds)
        )

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        card: dict[str, str] = {
            "number": request.card.number.get_secret_value(),
            "expiry": request.card.expiry,
            "name": request.card.name,
        }
        if request.card.cvv is not None:
            card["cvv"] = request.card.cvv.get_secret_value()
        body = {
            "card": card,
            "transactionId": request.transaction_id,
            "amount": money_text(request.amount),
            "currency": request.currency,
        }
        try:
            # httpx's timeouts apply to each read; this bounds the whole exchange.
            async with asyncio.timeout(self.timeout_seconds):
                response = await self.http.post(self.url, json=body, timeout=self.timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made: the provider cannot have seen the request.
            log.warning("provider_not_reached", provider=self.name, error_type=type(exc).__name__)
            return ChargeOutcome(Outcome.NOT_SENT, failure_code="provider_unavailable")
        except (TimeoutError, httpx.HTTPError) as exc:
            log.warning("provider_no_answer", provider=self.name, error_type=type(exc).__name__)
            return ChargeOutcome(Outcome.UNKNOWN)
        return self._charge_outcome(response)

    def _charge_outcome(self, response: httpx.Response) -> ChargeOutcome:
        answer = _json_object(response)
        if response.status_code == 200:
            charge_id = answer.get("chargeId")
            valid = isinstance(charge_id, str) and _CHARGE_ID.match(charge_id)
            return ChargeOutcome(Outcome.SUCCEEDED, charge_id=charge_id if valid else None)
        code = answer.get("code")
        code = code if isinstance(code, str) and re.fullmatch(r"[a-z_]{1,40}", code) else None
        if response.status_code == 402:
            return ChargeOutcome(Outcome.DECLINED, failure_code=code or "declined")
        if response.status_code == 400:
            field = answer.get("field")
            blamed = field if field in _CARD_FIELDS else "card"
            return ChargeOutcome(
                Outcome.REJECTED, failure_code=code or "invalid_card", field=blamed
            )
        # 5xx, or anything the contract does not name: the provider may have charged.
        log.warning("provider_failed", provider=self.name, status=response.status_code)
        return ChargeOutcome(Outcome.UNKNOWN)

    async def lookup(self, transaction_id: str) -> ChargeOutcome | None:
        url = f"{self.url}/{quote(transaction_id, safe='')}"
        try:
            async with asyncio.timeout(self.timeout_seconds):
                response = await self.http.get(url, timeout=self.timeout)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise ProviderUnreachable(type(exc).__name__) from None
        if response.status_code == 404:
            return None
        answer = _json_object(response)
        if response.status_code != 200:
            raise ProviderUnreachable(f"status {response.status_code}")
        status = answer.get("status")
        if status in _NOT_CHARGED:
            return None
        if status != "succeeded":
            # Only a clear answer settles an attempt: "not charged" frees the invoice for a
            # new charge, so a reply we cannot read must not be taken for it.
            raise ProviderUnreachable("unreadable status")
        charge_id = answer.get("chargeId")
        valid = isinstance(charge_id, str) and _CHARGE_ID.match(charge_id)
        return ChargeOutcome(Outcome.SUCCEEDED, charge_id=charge_id if valid else None)

    async def save_card(self, card: CardDetails) -> SavedCard | ChargeOutcome:
        body = {
            "card": {
                "number": card.number.get_secret_value(),
                "expiry": card.expiry,
                "name": card.name,
            }
        }
        try:
            async with asyncio.timeout(self.timeout_seconds):
                response = await self.http.post(
                    f"{self.url}/payment-methods", json=body, timeout=self.timeout
                )
        except (TimeoutError, httpx.HTTPError) as exc:
            log.warning("provider_no_answer", provider=self.name, error_type=type(exc).__name__)
            return ChargeOutcome(Outcome.NOT_SENT, failure_code="provider_unavailable")
        answer = _json_object(response)
        token = answer.get("id")
        if response.status_code == 201 and isinstance(token, str) and _CHARGE_ID.match(token):
            return SavedCard(token, card.masked_number, card.last4)
        if response.status_code == 400:
            field = answer.get("field")
            code = answer.get("code")
            return ChargeOutcome(
                Outcome.REJECTED,
                failure_code=code if isinstance(code, str) else "invalid_card",
                field=field if field in _CARD_FIELDS else "card",
            )
        return ChargeOutcome(Outcome.NOT_SENT, failure_code="provider_unavailable")

    async def forget_card(self, token: str) -> None:
        url = f"{self.url}/payment-methods/{quote(token, safe='')}"
        try:
            async with asyncio.timeout(self.timeout_seconds):
                response = await self.http.delete(url, timeout=self.timeout)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise ProviderUnreachable(type(exc).__name__) from None
        if response.status_code not in (204, 404):
            raise ProviderUnreachable(f"status {response.status_code}")

    async def charge_saved(self, charge: SavedCharge) -> ChargeOutcome:
        body = {
            "paymentMethod": charge.token,
            "transactionId": charge.transaction_id,
            "amount": money_text(charge.amount),
            "currency": charge.currency,
            "reference": charge.reference,
        }
        headers = {"Idempotency-Key": charge.transaction_id}
        try:
            async with asyncio.timeout(self.timeout_seconds):
                response = await self.http.post(
                    f"{self.url}/charges", json=body, headers=headers, timeout=self.timeout
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            log.warning("provider_not_reached", provider=self.name, error_type=type(exc).__name__)
            return ChargeOutcome(Outcome.NOT_SENT, failure_code="provider_unavailable")
        except (TimeoutError, httpx.HTTPError) as exc:
            log.warning("provider_no_answer", provider=self.name, error_type=type(exc).__name__)
            return ChargeOutcome(Outcome.UNKNOWN)
        if response.status_code == 404:
            return ChargeOutcome(Outcome.REJECTED, failure_code="customer_not_found")
        if response.status_code == 409:
            # The same key is still being worked on at the provider: ask again later.
            return ChargeOutcome(Outcome.UNKNOWN)
        return self._charge_outcome(response)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class CountedProvider:
    """A provider whose every call is counted in the metrics (`provider_requests_total`), by
    operation and outcome: the card provider's health as the on-call engineer sees it."""

    def __init__(self, inner: PaymentProvider) -> None:
        self.inner = inner
        self.name = inner.name

    def _count(self, operation: str, outcome: str) -> None:
        PROVIDER_CALLS.labels(self.name, operation, outcome).inc()

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        outcome = await self.inner.charge(request)
        self._count("charge", outcome.outcome)
        return outcome

    async def lookup(self, transaction_id: str) -> ChargeOutcome | None:
        try:
            found = await self.inner.lookup(transaction_id)
        except ProviderUnreachable:
            self._count("lookup", "unreachable")
            raise
        self._count("lookup", "found" if found is not None else "not_found")
        return found

    async def save_card(self, card: CardDetails) -> SavedCard | ChargeOutcome:
        result = await self.inner.save_card(card)
        self._count("save_card", "saved" if isinstance(result, SavedCard) else result.outcome)
        return result

    async def forget_card(self, token: str) -> None:
        try:
            await self.inner.forget_card(token)
        except ProviderUnreachable:
            self._count("forget_card", "unreachable")
            raise
        self._count("forget_card", "forgotten")

    async def charge_saved(self, charge: SavedCharge) -> ChargeOutcome:
        outcome = await self.inner.charge_saved(charge)
        self._count("charge_saved", outcome.outcome)
        return outcome


def create_provider(settings: PaymentSettings, http: httpx.AsyncClient) -> PaymentProvider:
    """The provider the settings name, counted; FakePay is the only one so far."""
    return CountedProvider(
        FakePayProvider(
            http,
            settings.fakepay_url,
            timeout_seconds=settings.provider_timeout_seconds,
            connect_timeout_seconds=settings.provider_connect_timeout_seconds,
        )
    )
