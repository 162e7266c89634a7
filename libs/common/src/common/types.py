"""Field types every service's API shares, so each documents and parses them the same way.

Money is a decimal string exact to the cent; times carry their UTC offset (RFC 3339). A
value the API answers with is the value every later read returns.
"""

import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

# A positive amount with at most ten digits before the point and two after it, written with
# ASCII digits only: no sign, exponent, spaces, leading zeros or other scripts' digits.
MONEY_PATTERN = r"^([1-9][0-9]{0,9}(\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9]))$"
_MONEY = re.compile(MONEY_PATTERN)
CENT = Decimal("0.01")


def _money_from_text(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value  # from our own code (a stored amount), never from a JSON body
    if not isinstance(value, str) or not _MONEY.fullmatch(value):
        raise ValueError('must be a positive decimal string with at most 2 decimals, e.g. "12.50"')
    return Decimal(value)


def money_text(value: Decimal) -> str:
    """The one written form of an amount: always two decimals."""
    return str(value.quantize(CENT))


# Platform APIs take and give amounts as strings ("1000.00"), never as floats.
Money = Annotated[
    Decimal,
    BeforeValidator(_money_from_text),
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": MONEY_PATTERN, "examples": ["199.99"]},
        mode="validation",
    ),
    WithJsonSchema(
        {"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "examples": ["199.99"]},
        mode="serialization",
    ),
]

# An amount that may be zero or negative in an answer (a balance, a ledger entry).
SignedMoneyOut = Annotated[
    Decimal,
    PlainSerializer(money_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$", "examples": ["25.00"]}),
]


# Seed 001's JSON-number amounts stay below ten billion.
NUMBER_MONEY_LIMIT = 10_000_000_000


def _number_to_cents(value: Any) -> Decimal:
    # JSON numbers arrive as int or float; a float is taken only when it is a whole number
    # of cents, so 199.99 is 199.99 and 1.234 is refused rather than rounded.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number with at most two decimals, e.g. 199.99")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if abs(value) >= NUMBER_MONEY_LIMIT:
        # Checked before scaling: a float near its largest (9.7e307) is infinite times 100.
        # Below it, a whole number of cents cannot round up to the limit.
        raise ValueError(f"must be less than {NUMBER_MONEY_LIMIT}")
    cents = value * 100
    if abs(cents - round(cents)) > 1e-6:
        raise ValueError("must have at most two decimals")
    amount = Decimal(round(cents)) / 100
    if amount <= 0:
        raise ValueError("must be greater than 0")
    return amount.quantize(CENT)


# Seed 001's contract shows amounts as JSON numbers; two decimals print exactly as a number.
NumberMoney = Annotated[
    Decimal,
    BeforeValidator(_number_to_cents),
    PlainSerializer(float, return_type=float, when_used="json"),
    WithJsonSchema(
        {"type": "number", "exclusiveMinimum": 0, "maximum": 9999999999.99, "multipleOf": 0.01},
        mode="validation",
    ),
    WithJsonSchema({"type": "number", "examples": [199.99]}, mode="serialization"),
]


def _as_utc(value: datetime) -> datetime:
    # DATETIME columns hold UTC without an offset; a value from elsewhere is converted.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# A moment in time as the APIs and events write it: RFC 3339 in UTC, "2026-11-24T04:33:05Z".
UtcDateTime = Annotated[
    datetime,
    AfterValidator(_as_utc),
    PlainSerializer(_utc_text, return_type=str, when_used="json"),
    Field(json_schema_extra={"format": "date-time"}),
]
