"""API models of the payment service.

Amounts are decimal strings ("12.50") and times RFC 3339 in UTC, with the shared types. A
card is validated here, before anything is stored or sent: digits and spaces, 12 to 19
digits (no Luhn check: seed 001's example cards fail it), expiry MM-YYYY not in the past, a
name. Messages name the rule, never the value, and the number and CVV are kept as secrets.
"""

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    WithJsonSchema,
)

from common.types import Money, SignedMoneyOut, UtcDateTime
from payment.models import (
    BillingRun,
    BillingRunItem,
    EntryType,
    ItemOutcome,
    ItemState,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    RunStatus,
    WalletEntry,
)
from payment.providers import CardDetails

_NUMBER = re.compile(r"[0-9 ]{12,40}")
_EXPIRY = re.compile(r"(0[1-9]|1[0-2])-([0-9]{4})")
_CVV = re.compile(r"[0-9]{3,4}")
# How far ahead an expiry may be; real cards are issued for a few years.
MAX_EXPIRY_YEARS = 30


def _card_number(value: Any) -> SecretStr:
    if not isinstance(value, str):
        raise ValueError("must be a string of digits")
    digits = value.replace(" ", "")
    if not _NUMBER.fullmatch(value) or not 12 <= len(digits) <= 19:
        raise ValueError("must be 12 to 19 digits; spaces are allowed")
    return SecretStr(value)


def _cvv(value: Any) -> SecretStr:
    if not isinstance(value, str) or not _CVV.fullmatch(value):
        raise ValueError("must be 3 or 4 digits")
    return SecretStr(value)


def _expiry(value: Any) -> str:
    match = _EXPIRY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("must be MM-YYYY, e.g. 01-2040")
    month, year = int(match[1]), int(match[2])
    today = datetime.now(UTC)
    # A card is good until the end of its expiry month.
    if (year, month) < (today.year, today.month):
        raise ValueError("the card has expired")
    if year > today.year + MAX_EXPIRY_YEARS:
        raise ValueError("is too far in the future")
    return match[0]


CardNumber = Annotated[
    SecretStr,
    BeforeValidator(_card_number),
    WithJsonSchema(
        {"type": "string", "pattern": r"^[0-9 ]+$", "examples": ["1234 5656 7822 5678"]}
    ),
]
Cvv = Annotated[
    SecretStr, BeforeValidator(_cvv), WithJsonSchema({"type": "string", "pattern": r"^[0-9]{3,4}$"})
]
Expiry = Annotated[
    str,
    BeforeValidator(_expiry),
    WithJsonSchema({"type": "string", "pattern": r"^(0[1-9]|1[0-2])-[0-9]{4}$"}),
]
CardName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Description = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Reference = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:/\-]+$")
]
ListLimit = Annotated[int, Field(ge=1, le=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CardIn(Strict):
    """A card as seed 001 sends it; `cvv` is optional, forwarded and never kept."""

    number: CardNumber
    expiry: Expiry
    name: CardName
    cvv: Cvv | None = None

    def details(self) -> CardDetails:
        return CardDetails(number=self.number, expiry=self.expiry, name=self.name, cvv=self.cvv)


class MaskedCard(BaseModel):
    number: str = Field(examples=["123456********5678"])
    expiry: str = Field(examples=["01-2040"])
    name: str


class InvoicePaymentCreate(Strict):
    invoice_id: uuid.UUID
    amount: Money
    currency: Currency
    description: Description
    card: CardIn
    # Whom the receipt goes to, and the invoice's number: carried by payment.succeeded.
    # Checked as an address by the invoice service when the client was saved.
    client_email: Annotated[str, Field(min_length=3, max_length=320)] | None = None
    client_name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    invoice_number: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class PaymentRead(BaseModel):
    id: uuid.UUID
    kind: PaymentKind
    invoice_id: uuid.UUID | None
    status: PaymentStatus
    amount: SignedMoneyOut
    currency: str
    description: str
    card: MaskedCard
    failure_code: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime

    @classmethod
    def of(cls, payment: Payment) -> "PaymentRead":
        return cls(
            id=payment.id,
            kind=PaymentKind(payment.kind),
            invoice_id=payment.invoice_id,
            status=PaymentStatus(payment.status),
            amount=payment.amount,
            currency=payment.currency,
            description=payment.description,
            card=MaskedCard(
                number=payment.card_number_masked,
                expiry=payment.card_expiry,
                name=payment.card_name,
            ),
            failure_code=payment.failure_code,
            created_at=payment.created_at,
            updated_at=payment.updated_at,
        )


class PaymentPage(BaseModel):
    items: list[PaymentRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class PageQuery(Strict):
    limit: ListLimit = 10
    cursor: str | None = Field(None, max_length=1024)


class TopupCreate(Strict):
    amount: Money
    currency: Currency
    card: CardIn


class WalletTransactionRead(BaseModel):
    id: int
    type: EntryType
    amount: SignedMoneyOut = Field(description="Positive for money in, negative for a fee")
    balance_after: SignedMoneyOut
    currency: str
    reference: str
    description: str
    created_at: UtcDateTime

    @classmethod
    def of(cls, entry: WalletEntry) -> "WalletTransactionRead":
        return cls(
            id=entry.id,
            type=EntryType(entry.type),
            amount=entry.amount,
            balance_after=entry.balance_after,
            currency=entry.currency,
            reference=entry.reference,
            description=entry.description,
            created_at=entry.created_at,
        )


class WalletTransactionPage(BaseModel):
    items: list[WalletTransactionRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class BalanceRead(BaseModel):
    currency: str
    balance: SignedMoneyOut


class WalletRead(BaseModel):
    balances: list[BalanceRead] = Field(
        description="One row per currency the owner has topped up in; empty before the first"
    )


class TopupRead(BaseModel):
    payment: PaymentRead
    transaction: WalletTransactionRead
    balance: BalanceRead = Field(description="The balance this top-up left")


class DebitCreate(Strict):
    reference: Reference = Field(description="The caller's id for this fee; a repeat is a replay")
    amount: Money
    currency: Currency
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ]


class RefundCreate(Strict):
    reference: Reference = Field(description="The reference of the debit to give back")


# --- payment methods and billing runs ---------------------------------------------------------


class PaymentMethodCreate(Strict):
    """A client's card for the monthly billing run, with the owner's auto-pay consent."""

    client_id: Annotated[int, Field(ge=1, le=2**63 - 1)]
    card: CardIn
    autopay_consent: Literal[True] = Field(
        description="Must be true: the owner confirms the client agreed to automatic charges"
    )


class PaymentMethodRead(BaseModel):
    id: uuid.UUID
    client_id: int
    card: MaskedCard
    autopay: bool
    autopay_consent_at: UtcDateTime
    created_at: UtcDateTime

    @classmethod
    def of(cls, method: PaymentMethod) -> "PaymentMethodRead":
        return cls(
            id=method.id,
            client_id=method.client_id,
            card=MaskedCard(
                number=method.card_number_masked, expiry=method.card_expiry, name=method.card_name
            ),
            autopay=True,
            autopay_consent_at=method.autopay_consent_at,
            created_at=method.created_at,
        )


class PaymentMethodPage(BaseModel):
    items: list[PaymentMethodRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class PaymentMethodQuery(PageQuery):
    client_id: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None


class BillingRunRead(BaseModel):
    id: uuid.UUID
    schedule: str
    scheduled_for: UtcDateTime
    as_of: date
    status: RunStatus
    started_at: UtcDateTime
    finished_at: UtcDateTime | None
    counts: dict[str, int] = Field(
        description="The user's invoices in this run per outcome (`queued`: not tried yet)"
    )

    @classmethod
    def of(cls, run: BillingRun, counts: dict[str, int]) -> "BillingRunRead":
        return cls(
            id=run.id,
            schedule=run.schedule,
            scheduled_for=run.scheduled_for,
            as_of=run.as_of,
            status=RunStatus(run.status),
            started_at=run.started_at,
            finished_at=run.finished_at,
            counts=counts,
        )


class BillingRunPage(BaseModel):
    items: list[BillingRunRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class BillingRunItemRead(BaseModel):
    invoice_id: uuid.UUID
    client_id: int
    amount: SignedMoneyOut
    currency: str
    outcome: ItemOutcome | None = Field(description="null while the invoice waits its first try")
    reason: str | None = Field(description="The provider's failure code, or why it was skipped")
    final: bool
    attempts: int
    next_attempt_at: UtcDateTime | None
    payment_id: uuid.UUID | None

    @classmethod
    def of(cls, item: BillingRunItem) -> "BillingRunItemRead":
        final = item.state == ItemState.DONE
        return cls(
            invoice_id=item.invoice_id,
            client_id=item.client_id,
            amount=item.amount,
            currency=item.currency,
            outcome=ItemOutcome(item.outcome) if item.outcome else None,
            reason=item.failure_code,
            final=final,
            attempts=item.attempts,
            next_attempt_at=None if final else item.next_attempt_at,
            payment_id=item.payment_id,
        )


class BillingRunDetail(BillingRunRead):
    items: list[BillingRunItemRead] = Field(description="The user's invoices, one page")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page of items; null at the end"
    )


class BillingRunQuery(PageQuery):
    limit: ListLimit = 50
