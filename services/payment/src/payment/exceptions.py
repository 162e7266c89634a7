"""Domain errors of the payment service, each named after the fact it reports.

None of them carries card data: a detail names the field, never the value.
"""

import math
import uuid
from typing import Any

from common.errors import Conflict, InvalidInput, NotFound, ProblemError


def _payment_ref(payment_id: uuid.UUID | None) -> dict[str, Any]:
    return {} if payment_id is None else {"payment_id": str(payment_id)}


class PaymentNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No payment with this id")


class PaymentMethodNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No payment method with this id")


class BillingRunNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No billing run with this id")


class PaymentInProgress(Conflict):
    """Another attempt holds the invoice and its outcome is not known yet."""

    def __init__(self, retry_after_seconds: float | None = None) -> None:
        super().__init__(
            "A payment of this invoice is in progress; its outcome is not known yet",
            code="payment_in_progress",
        )
        if retry_after_seconds is not None:
            self.headers["Retry-After"] = str(max(1, math.ceil(retry_after_seconds)))


class TopupInProgress(ProblemError):
    """A top-up made under this Idempotency-Key has no known outcome yet.

    503, not 409: the idempotency middleware keeps a 4xx as the key's answer for 24 hours, and
    this one is true for a few seconds only; a 5xx is not kept, so the retry asks again.
    """

    status = 503
    title = "Top-up in progress"

    def __init__(self, retry_after_seconds: float, payment_id: uuid.UUID | None = None) -> None:
        super().__init__(
            "A top-up with this Idempotency-Key is in progress; its outcome is not known yet, "
            "try again later",
            code="payment_in_progress",
            **_payment_ref(payment_id),
        )
        self.headers["Retry-After"] = str(max(1, math.ceil(retry_after_seconds)))


class TopupKeyReused(InvalidInput):
    """The Idempotency-Key names a top-up of another amount, currency or card."""

    def __init__(self) -> None:
        super().__init__(
            "Idempotency-Key was already used for a top-up of another amount, currency or card",
            field="Idempotency-Key",
        )


class InvoiceHeldByAnotherOwner(Conflict):
    def __init__(self) -> None:
        super().__init__("This invoice id has a payment that is not yours", code="invoice_taken")


class CardDeclined(ProblemError):
    """The provider refused the charge (insufficient funds); nothing was taken."""

    status = 402
    title = "Payment declined"

    def __init__(self, failure_code: str, payment_id: uuid.UUID) -> None:
        super().__init__("The card was declined", code=failure_code, **_payment_ref(payment_id))


class CardRejected(InvalidInput):
    """The provider found the card unusable; reported like our own validation."""

    def __init__(self, failure_code: str, field: str, payment_id: uuid.UUID | None) -> None:
        super().__init__(
            "The card was refused by the payment provider",
            field=field,
            code=failure_code,
            **_payment_ref(payment_id),
        )


class ProviderUnavailable(ProblemError):
    """The provider did not answer in time or failed; try again after Retry-After."""

    status = 503
    title = "Payment provider unavailable"

    def __init__(self, retry_after_seconds: int, payment_id: uuid.UUID | None = None) -> None:
        super().__init__(
            "The payment provider is not answering; nothing more will be charged for this "
            "attempt, try again later",
            code="provider_unavailable",
            **_payment_ref(payment_id),
        )
        self.headers["Retry-After"] = str(retry_after_seconds)


class InsufficientBalance(ProblemError):
    status = 402
    title = "Insufficient balance"

    def __init__(self) -> None:
        super().__init__("The wallet balance is lower than the amount", code="insufficient_balance")


class DebitNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No debit with this reference")


class ReferenceReused(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "This reference was already used for a different amount or currency",
            code="reference_reused",
        )


class UnsupportedCurrency(InvalidInput):
    def __init__(self) -> None:
        super().__init__("Wallets are not kept in this currency", field="currency")


class TopupTooLarge(InvalidInput):
    def __init__(self, limit: str) -> None:
        super().__init__(f"A top-up is at most {limit}", field="amount")


class PaymentNotCompleted(ProblemError):
    """Something unexpected broke a card request; the attempt, if any, will be settled."""

    status = 503
    title = "Payment not completed"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            "The payment could not be completed now; its outcome will be settled with the "
            "provider, try again later",
            code="payment_not_completed",
        )
        self.headers["Retry-After"] = str(retry_after_seconds)
