"""API models: the platform's own (`/api/...`) and seed 001's contract (`/invoice...`)."""

import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    SecretStr,
    StringConstraints,
    WithJsonSchema,
    computed_field,
)

from common.types import Money, NumberMoney, UtcDateTime, money_text
from invoice.models import InvoiceStatus

# Answers are built from stored Decimals, which Money and NumberMoney refuse on purpose (they
# parse what a client sends: text, or a JSON number). These write an amount exactly as those
# types do, without parsing it again.
MoneyOut = Annotated[
    Decimal,
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "examples": ["199.99"]}),
]
NumberMoneyOut = Annotated[
    Decimal,
    PlainSerializer(float, return_type=float, when_used="json"),
    WithJsonSchema({"type": "number", "examples": [199.99]}),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
# Seed 000 spells "past due" with a space; the stored and returned value is "past_due".
StatusFilter = Annotated[
    InvoiceStatus,
    BeforeValidator(lambda v: v.replace(" ", "_") if isinstance(v, str) else v),
]
IsoDate = Annotated[
    date, BeforeValidator(lambda v: _strict_iso_date(v)), Field(description="Y-m-d")
]
ListLimit = Annotated[int, Field(ge=1, le=100)]
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _strict_iso_date(value: Any) -> Any:
    # Pydantic would also take timestamps and datetimes; the contract is Y-m-d only.
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        raise ValueError("must be a date formatted as Y-m-d")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClientCreate(Strict):
    name: Name
    email: EmailStr


class ClientRead(BaseModel):
    id: int
    name: str
    email: str
    created_at: UtcDateTime


class ClientPage(BaseModel):
    items: list[ClientRead]
    next_cursor: str | None


QUANTITY = re.compile(r"[0-9]{1,7}(\.[0-9]{1,3})?")


def _quantity(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError('must be a decimal string with at most 3 decimals, e.g. "1.5"')
    text = str(value)
    if not QUANTITY.fullmatch(text):
        raise ValueError("must be a positive number below 10000000 with at most 3 decimals")
    if Decimal(text) <= 0:
        raise ValueError("must be greater than 0")
    return Decimal(text)


Quantity = Annotated[
    Decimal,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "string", "pattern": r"^[0-9]{1,7}(\.[0-9]{1,3})?$"},
                {"type": "integer", "minimum": 1, "maximum": 9999999},
            ],
            "examples": ["1.5", 3],
        },
        mode="validation",
    ),
]
QuantityOut = Annotated[
    Decimal,
    PlainSerializer(lambda v: f"{v.normalize():f}", return_type=str),
    WithJsonSchema({"type": "string", "examples": ["1.5"]}),
]
MAX_LINES = 200


class LineCreate(Strict):
    description: Description
    quantity: Quantity = Field(description='How many: "1.5", or an integer', default=Decimal(1))
    unit_price: Money


class InvoiceCreate(Strict):
    client_id: int = Field(ge=1)
    description: Description
    amount: Money | None = Field(
        None, description="Required without `lines`; with them, optional and equal to their sum"
    )
    currency: Currency | None = Field(None, description="ISO 4217; the platform default if omitted")
    due_date: IsoDate | None = Field(None, description="Y-m-d; net 30 if omitted")
    lines: list[LineCreate] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LINES,
        description="The invoice's lines; each amount is quantity x unit price, rounded to "
        "the cent, and the invoice's amount is their sum",
    )


class InvoiceLinks(BaseModel):
    self: str = Field(examples=["/api/invoices/0197a0b2-0000-7000-8000-000000000000"])
    pdf: str = Field(description="The invoice as a PDF (application/pdf)")
    send: str = Field(description="POST here to email the invoice with its PDF")


class InvoiceRead(BaseModel):
    id: uuid.UUID
    number: str = Field(description="The owner's running number", examples=["INV-000012"])
    client_id: int
    client_name: str
    description: str
    amount: MoneyOut = Field(description="A decimal string, exact to the cent")
    currency: str
    status: InvoiceStatus
    due_date: date
    version: int = Field(description="Goes up whenever anything the invoice's PDF shows changes")
    failure_reason: str | None = Field(
        None, description="Why the monthly billing run gave up on a FAILED invoice"
    )
    created_at: UtcDateTime
    updated_at: UtcDateTime
    source: str | None = Field(
        None, description="The billing platform it was imported from; null when made here"
    )
    external_number: str | None = Field(None, description="Its number on that platform")
    removed_upstream_at: UtcDateTime | None = Field(
        None, description="When the platform stopped listing it (it was voided here then)"
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def links(self) -> InvoiceLinks:
        base = f"/api/invoices/{self.id}"
        return InvoiceLinks(self=base, pdf=f"{base}/pdf", send=f"{base}/send")


class InvoiceLineRead(BaseModel):
    description: str
    quantity: QuantityOut
    unit_price: MoneyOut
    amount: MoneyOut


class InvoiceDetail(InvoiceRead):
    """One invoice with its lines: an invoice created without lines has one, its
    description for the amount."""

    lines: list[InvoiceLineRead]


class SendCreate(Strict):
    to: EmailStr | None = Field(None, description="The recipient; the client's email if omitted")
    message: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
        | None
    ) = Field(None, description="A note shown above the invoice in the email")


class SendLinks(BaseModel):
    email: str = Field(description="The email's delivery status, from the email service")
    invoice: str


class SendAccepted(BaseModel):
    send_id: uuid.UUID
    status: Literal["queued"] = "queued"
    recipient: str
    fee: MoneyOut = Field(description="Taken from the wallet; given back if the email fails")
    fee_currency: str
    links: SendLinks


class InvoicePage(BaseModel):
    items: list[InvoiceRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class InvoiceListQuery(Strict):
    """Seed 000's filters and sort, plus cursor pagination."""

    client_name: Name | None = Field(None, description="Client names starting with this text")
    status: StatusFilter | None = None
    due_date: IsoDate | None = None
    order_by: Literal["client_name", "status", "due_date"] = "due_date"
    order_dir: Literal["asc", "desc"] = "desc"
    limit: ListLimit = 10
    cursor: str | None = Field(None, max_length=1024)


class InvoiceExportQuery(Strict):
    """The listing's filters and sort, without paging: the export holds every match."""

    client_name: Name | None = Field(None, description="Client names starting with this text")
    status: StatusFilter | None = None
    due_date: IsoDate | None = None
    order_by: Literal["client_name", "status", "due_date"] = "due_date"
    order_dir: Literal["asc", "desc"] = "desc"


class PageQuery(Strict):
    limit: ListLimit = 10
    cursor: str | None = Field(None, max_length=1024)


# --- Seed 001's contract -------------------------------------------------------------------

SEED_STATUS = {
    InvoiceStatus.PENDING: "PENDING",
    InvoiceStatus.PAST_DUE: "PAST_DUE",
    InvoiceStatus.PAID: "PAID",
    InvoiceStatus.VOID: "CANCELLED",
    InvoiceStatus.FAILED: "FAILED",
}
STATUS_FROM_SEED = {seed: status for status, seed in SEED_STATUS.items()}
SeedStatus = Literal["PENDING", "PAST_DUE", "PAID", "CANCELLED", "FAILED"]


CARD_NUMBER = re.compile(r"[0-9 ]+")
CARD_EXPIRY = re.compile(r"^(0[1-9]|1[0-2])-([0-9]{4})$")


def _card_number(value: Any) -> Any:
    # Messages of our own: Pydantic's would do, but none of ours may ever quote the number.
    if not isinstance(value, str) or not CARD_NUMBER.fullmatch(value):
        raise ValueError("must be digits, spaces allowed")
    if not 12 <= len(value.replace(" ", "")) <= 19:
        raise ValueError("must have 12 to 19 digits")
    return value


def _card_expiry(value: Any) -> Any:
    if not isinstance(value, str) or not (match := CARD_EXPIRY.fullmatch(value)):
        raise ValueError("must be MM-YYYY")
    today = datetime.now(UTC).date()
    # A card is good until the end of its expiry month.
    if (int(match[2]), int(match[1])) < (today.year, today.month):
        raise ValueError("the card has expired")
    return value


class Card(Strict):
    """A payment card, used for one payment and never stored: only its masked form is kept,
    by the payment service."""

    # SecretStr: printing the model or the request (a debugger, a traceback) shows stars.
    number: Annotated[
        SecretStr,
        BeforeValidator(_card_number),
        Field(
            description="12 to 19 digits; spaces allowed. Never stored, logged or answered.",
            examples=["1234 5656 7822 5678"],
            json_schema_extra={"pattern": r"^[0-9 ]+$"},
        ),
    ]
    expiry: Annotated[
        str,
        BeforeValidator(_card_expiry),
        Field(
            description="MM-YYYY, not in the past",
            examples=["01-2040"],
            json_schema_extra={"pattern": CARD_EXPIRY.pattern},
        ),
    ]
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
        Field(description="The name on the card", examples=["J Doe"]),
    ]


class MaskedCard(BaseModel):
    number: str = Field(
        description="First six and last four digits, eight stars between",
        examples=["123456********5678"],
    )
    expiry: str = Field(examples=["01-2040"])
    name: str = Field(examples=["J Doe"])


class InvoiceRequest(Strict):
    jobDescription: Description
    amount: NumberMoney
    customerId: int = Field(ge=1)
    card: Card | None = Field(
        None,
        description="Pays the invoice at once. Without it the invoice is created PENDING.",
    )


class InvoiceResponse(BaseModel):
    id: uuid.UUID
    jobDescription: str
    customerId: int
    amount: NumberMoneyOut
    card: MaskedCard | None = Field(
        None, description="The card that paid the invoice in this request, masked"
    )
    customerName: str
    customerEmail: str
    invoiceStatus: SeedStatus


class SeedListQuery(Strict):
    invoiceStatus: SeedStatus | None = None
    limit: ListLimit = 10
    cursor: str | None = Field(None, max_length=1024)
