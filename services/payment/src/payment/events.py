"""Events the payment service publishes on `payment.events`; consumers keep slim copies.

The subject (and Kafka key) of every event is the owner's user id, so one owner's events
stay in order. Amounts are decimal strings with two decimals, never floats.

- `payment.succeeded` / `payment.failed`: a card charge ended. The invoice service marks an
  invoice PAID on `payment.succeeded` with kind "invoice" or "autopay", and the email service
  sends the client a receipt when it names the client's email (`client_email`, `client_name`,
  `invoice_number`: set for those kinds when known, absent for top-ups). Kind "autopay" is a
  charge of the monthly billing run: its `payment.failed` names the client (for the email
  service's notice), says whether the failure is `final` (the invoice becomes FAILED and a
  person acts) or will be retried at `next_attempt_at`.
- `wallet.credited` / `wallet.debited`: a wallet account changed. `sequence` numbers the
  account's changes from 1 without gaps, so a consumer keeping a balance can tell a missed
  or repeated one; `balance_after` is the balance the change left.
"""

import uuid
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, PlainSerializer, WithJsonSchema

from common.types import UtcDateTime, money_text

TOPIC = "payment.events"
SOURCE = "/services/payment"

PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_FAILED = "payment.failed"
WALLET_CREDITED = "wallet.credited"
WALLET_DEBITED = "wallet.debited"

# An amount as events carry it: "25.00". Events are built from stored values, never parsed
# from a client, so this type only writes.
AmountText = Annotated[
    Decimal,
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "examples": ["25.00"]}),
]


class PaymentSucceeded(BaseModel):
    payment_id: uuid.UUID
    invoice_id: uuid.UUID | None  # null for a wallet top-up
    owner_id: uuid.UUID
    amount: AmountText
    currency: str
    kind: Literal["invoice", "topup", "autopay"]
    card_last4: str
    occurred_at: UtcDateTime
    # For kinds "invoice" and "autopay", when known: whom the receipt goes to, and for what.
    client_email: str | None = None
    client_name: str | None = None
    invoice_number: str | None = None


class PaymentFailed(BaseModel):
    payment_id: uuid.UUID
    invoice_id: uuid.UUID | None
    owner_id: uuid.UUID
    amount: AmountText
    currency: str
    kind: Literal["invoice", "topup", "autopay"]
    card_last4: str
    # insufficient_funds, invalid_card, invalid_expiry, expired_card, invalid_name,
    # provider_unavailable (never reached), not_charged (unknown outcome, provider has none)
    # For autopay: customer_not_found, currency_mismatch, or the provider's own code.
    failure_code: str
    occurred_at: UtcDateTime
    # Set for kind "autopay" only.
    client_id: int | None = None
    client_email: str | None = None
    client_name: str | None = None
    # True: the invoice is FAILED and a person acts. False: tried again at next_attempt_at.
    final: bool = False
    next_attempt_at: UtcDateTime | None = None
    billing_run_id: uuid.UUID | None = None


class WalletChanged(BaseModel):
    """The data of wallet.credited and wallet.debited."""

    owner_id: uuid.UUID
    transaction_id: int  # the ledger entry's id, as GET /api/wallet/transactions shows it
    currency: str
    amount: AmountText  # always positive; the event type says which way it went
    balance_after: AmountText
    sequence: int
    reference: str


# The catalogue of this service's events, from which docs/events.md is generated.
EVENTS: dict[str, type[BaseModel]] = {
    PAYMENT_SUCCEEDED: PaymentSucceeded,
    PAYMENT_FAILED: PaymentFailed,
    WALLET_CREDITED: WalletChanged,
    WALLET_DEBITED: WalletChanged,
}
