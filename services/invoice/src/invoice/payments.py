"""The client of the payment service: the one synchronous call this service makes to another.

A card payment (seed 001) is answered while the user waits, so the invoice service asks the
payment service's internal API directly instead of over Kafka. The caller's access token is
passed on, and the payment service decides the owner from it, as it does for its own API.

What the payment service refuses (declined, already in progress, a bad card) is passed on with
its status, title, detail and field; when it cannot be reached, or does not answer in time,
the user hears 503 with Retry-After and the invoice stays as it was. If the charge went
through all the same, the payment service settles it with the provider and its
`payment.succeeded` event marks the invoice paid.
"""

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from common.logging import get_logger
from common.types import money_text
from invoice.exceptions import InsufficientBalance, PaymentRefused, PaymentsUnavailable

log = get_logger(__name__)

INVOICE_PAYMENTS_PATH = "/internal/invoice-payments"
WALLET_DEBITS_PATH = "/internal/wallet/debits"
WALLET_REFUNDS_PATH = "/internal/wallet/refunds"
# The statuses whose problem the user can act on; anything else means "try again later".
PASSED_ON = frozenset({402, 409, 422})


@dataclass(frozen=True)
class CardDetails:
    """The card as the client typed it, held only for the length of one payment."""

    number: str
    expiry: str
    name: str

    def __repr__(self) -> str:
        # A traceback or a debug line that shows this object never shows the number.
        return f"CardDetails(number='{mask_card_number(self.number)}', expiry=..., name=...)"


@dataclass(frozen=True)
class InvoicePayment:
    invoice_id: uuid.UUID
    amount: Decimal
    currency: str
    description: str
    card: CardDetails
    # Carried to the payment's `payment.succeeded`, for the client's receipt.
    number: str | None = None
    client_email: str | None = None
    client_name: str | None = None


@dataclass(frozen=True)
class PaidCard:
    """The card of a payment as the payment service reports it: number masked."""

    number: str
    expiry: str
    name: str


@dataclass(frozen=True)
class PaymentMade:
    """A succeeded payment of the invoice.

    `created` is False when the payment service already had a succeeded payment for the
    invoice (an earlier request whose answer was lost): nothing was charged this time, and
    `card` is the card that paid.
    """

    payment_id: str
    created: bool
    card: PaidCard | None


def mask_card_number(number: str) -> str:
    """First six and last four digits around eight stars, as seed 001 shows: 123456********5678.

    Always eight stars, so the masked form does not tell the number's length either.
    """
    digits = "".join(c for c in number if c.isdigit())
    return f"{digits[:6]}********{digits[-4:]}"


class PaymentClient:
    """Calls the payment service's internal API with one pooled HTTP client."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        retry_after_seconds: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry_after_seconds = retry_after_seconds
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def pay_invoice(
        self, access_token: str, payment: InvoicePayment, *, card_field: str = "card"
    ) -> PaymentMade:
        """Charge the card for the invoice; raises PaymentRefused or PaymentsUnavailable.

        `card_field` is where the card sits in the user's request ("" when the body is the
        card), so a refused field is named as the user sent it: `card.number` or `number`.
        """
        body: dict[str, Any] = {
            "invoice_id": str(payment.invoice_id),
            "amount": money_text(payment.amount),
            "currency": payment.currency,
            "description": payment.description,
            "card": {
                "number": payment.card.number,
                "expiry": payment.card.expiry,
                "name": payment.card.name,
            },
        }
        receipt = {
            "invoice_number": payment.number,
            "client_email": payment.client_email,
            "client_name": payment.client_name,
        }
        body.update({key: value for key, value in receipt.items() if value})
        try:
            response = await self.http.post(
                INVOICE_PAYMENTS_PATH,
                json=body,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.TimeoutException as exc:
            # The request may have reached the payment service: it settles the outcome.
            log.warning("payment_service_timeout", error_type=type(exc).__name__)
            raise PaymentsUnavailable(
                "The payment service did not answer in time; the payment's outcome is being "
                "settled. Check the invoice before paying again.",
                retry_after=self.retry_after_seconds,
                invoice_id=str(payment.invoice_id),
            ) from None
        except httpx.HTTPError as exc:
            log.warning("payment_service_unreachable", error_type=type(exc).__name__)
            raise PaymentsUnavailable(
                "The payment service cannot be reached; nothing was charged.",
                retry_after=self.retry_after_seconds,
                invoice_id=str(payment.invoice_id),
            ) from None
        return self._read_answer(response, str(payment.invoice_id), card_field)

    async def debit_fee(
        self, access_token: str, reference: str, amount: Decimal, currency: str, description: str
    ) -> None:
        """Take a fee from the owner's wallet; raises InsufficientBalance when it is short.

        The reference makes the debit happen once: asked again, the payment service answers
        with the first debit. When the answer is lost (a timeout) the debit may or may not
        have been taken, so it is given back before the user hears 503.
        """
        body = {
            "reference": reference,
            "amount": money_text(amount),
            "currency": currency,
            "description": description,
        }
        try:
            response = await self.http.post(
                WALLET_DEBITS_PATH, json=body, headers={"Authorization": f"Bearer {access_token}"}
            )
        except httpx.HTTPError as exc:
            log.warning("wallet_debit_failed", error_type=type(exc).__name__, reference=reference)
            if isinstance(exc, httpx.TimeoutException):
                await self.refund_fee(access_token, reference)
            raise PaymentsUnavailable(
                "The payment service cannot take the fee now; nothing was sent.",
                retry_after=self.retry_after_seconds,
            ) from None
        if response.status_code in (200, 201):
            return
        problem = _json_object(response)
        if response.status_code == 402:
            raise InsufficientBalance(
                str(problem.get("detail") or "The wallet's balance is too low for the fee"),
                fee_amount=money_text(amount),
                fee_currency=currency,
            )
        log.error("wallet_debit_unexpected_answer", status=response.status_code)
        raise PaymentsUnavailable(
            "The payment service could not take the fee; nothing was sent.",
            retry_after=self.retry_after_seconds,
        )

    async def refund_fee(self, access_token: str, reference: str) -> bool:
        """Give a fee back; False when it could not be (logged for a refund by hand). A fee
        that was never taken counts as given back."""
        try:
            response = await self.http.post(
                WALLET_REFUNDS_PATH,
                json={"reference": reference},
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.HTTPError as exc:
            log.error("wallet_refund_failed", error_type=type(exc).__name__, reference=reference)
            return False
        if response.status_code in (200, 201, 404):
            log.info("wallet_fee_refunded", reference=reference, status=response.status_code)
            return True
        log.error("wallet_refund_failed", status=response.status_code, reference=reference)
        return False

    def _read_answer(
        self, response: httpx.Response, invoice_id: str, card_field: str
    ) -> PaymentMade:
        """The payment, or the payment service's refusal as this service's own problem; every
        problem names the invoice, so a client that created it with POST /invoice can pay it
        again with POST /invoice/pay/{invoice_id}."""
        if response.status_code in (200, 201):
            answer = _json_object(response)
            if answer.get("status") == "succeeded":
                return PaymentMade(
                    payment_id=str(answer.get("id")),
                    created=response.status_code == 201,
                    card=_paid_card(answer.get("card")),
                )
        problem = _json_object(response)
        title = str(problem.get("title") or "Payment refused")
        detail = str(problem.get("detail") or title)
        if response.status_code in PASSED_ON:
            field = _first_field(problem, card_field)
            log.info("payment_refused", status=response.status_code, field=field)
            refused = PaymentRefused(
                response.status_code, title, detail, field=field, invoice_id=invoice_id
            )
            if "retry-after" in response.headers:  # a payment in progress says when it ends
                refused.headers["Retry-After"] = str(
                    _retry_after(response, self.retry_after_seconds)
                )
            raise refused
        if response.status_code == 503:
            log.warning("payment_service_unavailable")
            raise PaymentsUnavailable(
                detail,
                retry_after=_retry_after(response, self.retry_after_seconds),
                invoice_id=invoice_id,
            )
        # A status this contract does not have (401, 404, 500...): the payment service is not
        # answering as it should. The user is told to come back; whether anything was charged
        # is the payment service's to settle.
        log.error("payment_service_unexpected_answer", status=response.status_code)
        raise PaymentsUnavailable(
            "The payment service could not take the payment.",
            retry_after=self.retry_after_seconds,
            invoice_id=invoice_id,
        )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _paid_card(value: Any) -> PaidCard | None:
    if not isinstance(value, dict):
        return None
    try:
        return PaidCard(
            number=_still_masked(str(value["number"])),
            expiry=str(value["expiry"]),
            name=str(value["name"]),
        )
    except KeyError:
        return None


def _still_masked(number: str) -> str:
    """The number as the payment service masked it; masked here should it ever show more than
    the ten digits a masked number keeps, so no full number goes further."""
    if sum(c.isdigit() for c in number) <= 10:
        return number
    return mask_card_number(number)


def _first_field(problem: dict[str, Any], card_field: str) -> str | None:
    """The first field the payment service names, renamed to the user's request."""
    errors = problem.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    field = first.get("field") if isinstance(first, dict) else None
    if not isinstance(field, str) or not field:
        return None
    if field.startswith("card."):
        name = field.removeprefix("card.")
        return f"{card_field}.{name}" if card_field else name
    return field


def _retry_after(response: httpx.Response, default: int) -> int:
    value = response.headers.get("retry-after", "")
    return int(value) if value.isdigit() else default
