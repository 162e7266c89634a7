"""FakePay: the mock card payment provider of seed 001, rebuilt because its source is not ours.

It speaks the seed's shape (`POST /fakepay` with a card and a `transactionId`, answering
`200 {"message": "Payment processed successfully"}`), validates like a real provider, keeps a
ledger of every accepted charge, and lets tests inject declines, outages and hangs through
`/_control`. Run it with `python -m simulators.fakepay --host 127.0.0.1 --port 9000`.
See docs/fakepay.md.
"""

import argparse
import asyncio
import json
import logging
import random
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, Strict, StrictStr, ValidationError
from pydantic.alias_generators import to_camel

logger = logging.getLogger("simulators.fakepay")

SUCCESS_MESSAGE = "Payment processed successfully"
# Like real providers' test cards: these last four digits always give the same answer.
DECLINE_LAST4 = "0002"
ERROR_LAST4 = "0119"
DEFAULT_HANG_DELAY = 30.0
DEFAULT_SLOW_DELAY = 2.0

FaultMode = Literal["decline", "error", "hang", "slow", "accept_then_hang", "reject"]
# The test cards' answers when charged from the vault, beside DECLINE_LAST4 and ERROR_LAST4.
CURRENCY_MISMATCH_LAST4 = "0127"  # the card cannot be charged in the asked currency


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Card(_Camel):
    number: StrictStr
    expiry: StrictStr
    name: StrictStr
    cvv: StrictStr | None = None


class ChargeRequest(_Camel):
    card: Card
    transaction_id: StrictStr
    # The body is parsed with Decimal for floats, so 99.99 arrives exactly; strict so that
    # `true` is not taken for 1.
    amount: StrictStr | Annotated[int, Strict()] | Annotated[Decimal, Strict()] | None = None
    currency: StrictStr | None = None


class SavedCardRequest(_Camel):
    """A card to keep in the vault; only a token for it goes back to the platform."""

    card: Card


class TokenChargeRequest(_Camel):
    """A charge of a vaulted card, like Stripe's PaymentIntent with a payment method."""

    payment_method: StrictStr
    transaction_id: StrictStr
    amount: StrictStr | Annotated[int, Strict()] | Annotated[Decimal, Strict()]
    currency: StrictStr
    # What the charge is for (the platform sends the invoice id), kept in the ledger.
    reference: StrictStr | None = None


@dataclass
class VaultedCard:
    token: str
    number: str  # the digits: the vault is the provider's, where a card number may live
    expiry: str
    name: str


class MaskedCard(_Camel):
    number: str
    expiry: str
    name: str


class LedgerEntry(_Camel):
    transaction_id: str
    charge_id: str
    amount: Decimal | None
    currency: str | None
    card: MaskedCard
    at: datetime
    payment_method: str | None = None
    reference: str | None = None


class FaultRequest(_Camel):
    # The control API takes snake_case keys, as documented; aliases are not used here.
    model_config = ConfigDict(alias_generator=None)

    mode: FaultMode
    card_last4: Annotated[str, Field(pattern=r"^[0-9]{4}$")] | None = None
    transaction_id: str | None = None
    seconds: Annotated[float, Field(gt=0)] | None = None
    delay: Annotated[float, Field(ge=0)] | None = None
    times: Annotated[int, Field(ge=1)] | None = None
    # For `reject`: the error code answered with 400 (e.g. an error the platform never heard of).
    code: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")] | None = None


class Behaviour(BaseModel):
    """Load-test behaviour of every charge: a latency and random declines and 5xx answers."""

    latency_ms: Annotated[float, Field(ge=0)] = 0
    decline_rate: Annotated[float, Field(ge=0, le=1)] = 0
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0


@dataclass
class Fault:
    id: str
    spec: FaultRequest
    expires_at: float | None  # time.monotonic() deadline
    remaining: int | None

    def delay(self) -> float:
        """Seconds a hang or a slow answer waits."""
        if self.spec.delay is not None:
            return self.spec.delay
        return DEFAULT_SLOW_DELAY if self.spec.mode == "slow" else DEFAULT_HANG_DELAY

    def matches(self, last4: str, transaction_id: str) -> bool:
        if self.spec.card_last4 is not None and self.spec.card_last4 != last4:
            return False
        return self.spec.transaction_id is None or self.spec.transaction_id == transaction_id


class CardError(Exception):
    """A request a real provider would refuse with 400; the message never holds card data."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code, self.field, self.message = code, field, message


def mask_card_number(digits: str) -> str:
    """First six, eight stars, last four: the masked form seed 001 shows (123456********5678)."""
    # A fixed run of stars matches the seed's example and does not reveal the number's length.
    return f"{digits[:6]}********{digits[-4:]}"


def _check_charge(body: Any) -> tuple[ChargeRequest, str, Decimal | None]:
    """The request, the card's digits and the amount, or a CardError naming the bad field."""
    try:
        charge = ChargeRequest.model_validate(body)
    except ValidationError as error:
        # Build the message ourselves: Pydantic's errors can carry the input, i.e. the number.
        first = error.errors()[0]
        # The location past the field names only says which member of a union failed.
        loc = first["loc"][:2] if first["loc"][:1] == ("card",) else first["loc"][:1]
        field = ".".join(str(part) for part in loc) or "body"
        problem = "is required" if first["type"] == "missing" else "has the wrong type"
        raise CardError("invalid_request", field, f"{field} {problem}") from None

    number = charge.card.number
    digits = number.replace(" ", "")
    if not re.fullmatch(r"[0-9 ]+", number) or not 12 <= len(digits) <= 19:
        raise CardError("invalid_card", "card.number", "Card number must be 12 to 19 digits")

    match = re.fullmatch(r"([0-9]{2})-([0-9]{4})", charge.card.expiry)
    if not match or not 1 <= int(match[1]) <= 12:
        raise CardError("invalid_expiry", "card.expiry", "Expiry must be MM-YYYY")
    today = datetime.now(UTC)
    # A card is good until the end of its expiry month.
    if (int(match[2]), int(match[1])) < (today.year, today.month):
        raise CardError("expired_card", "card.expiry", "Card has expired")

    if not charge.card.name.strip():
        raise CardError("invalid_name", "card.name", "Name on card is required")
    if not charge.transaction_id.strip():
        raise CardError("invalid_request", "transactionId", "transactionId is required")
    if charge.currency is not None and not re.fullmatch(r"[A-Z]{3}", charge.currency):
        raise CardError("invalid_request", "currency", "Currency must be an ISO 4217 code")
    return charge, digits, _parse_amount(charge.amount)


def _parse_amount(raw: str | int | Decimal | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        amount = Decimal(raw)
    except InvalidOperation:
        amount = Decimal("NaN")
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or amount <= 0 or (isinstance(exponent, int) and exponent < -2):
        raise CardError(
            "invalid_request", "amount", "Amount must be above zero with at most 2 decimals"
        )
    return amount.quantize(Decimal("0.01"))  # 100 is kept as 100.00, like the platform sends


class FakePay:
    """The simulator's whole state. One process, one event loop: no await falls between
    reading and changing it, so it needs no lock."""

    def __init__(self) -> None:
        self.ledger: list[LedgerEntry] = []
        self.by_transaction: dict[str, list[LedgerEntry]] = {}
        self.faults: list[Fault] = []
        self.vault: dict[str, VaultedCard] = {}
        # Idempotency-Key -> (the request it came with, the answer given), like Stripe's keys.
        self.answers: dict[str, tuple[dict[str, Any], int, dict[str, Any]]] = {}
        self.in_flight: set[str] = set()
        self.behaviour = Behaviour()
        self.random = random.Random()  # noqa: S311 - simulated declines, not security

    def add_fault(self, spec: FaultRequest) -> str:
        expires = time.monotonic() + spec.seconds if spec.seconds is not None else None
        fault = Fault(f"flt_{secrets.token_hex(6)}", spec, expires, spec.times)
        self.faults.append(fault)
        return fault.id

    def take_fault(self, last4: str, transaction_id: str) -> Fault | None:
        """The newest live fault matching this charge, counting one use of it."""
        now = time.monotonic()
        self.faults = [f for f in self.faults if f.expires_at is None or now < f.expires_at]
        # Newest first, so a test can lay a narrow fault over a broad one.
        for fault in reversed(self.faults):
            if fault.matches(last4, transaction_id):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                return fault
        return None

    def record(
        self,
        charge: ChargeRequest | TokenChargeRequest,
        digits: str,
        amount: Decimal | None,
        card: Card | VaultedCard,
    ) -> LedgerEntry:
        # Only the masked number and the name are kept: never the full number, never the cvv.
        entry = LedgerEntry(
            transaction_id=charge.transaction_id,
            charge_id=f"ch_{secrets.token_hex(12)}",
            amount=amount,
            currency=charge.currency,
            card=MaskedCard(number=mask_card_number(digits), expiry=card.expiry, name=card.name),
            at=datetime.now(UTC),
            payment_method=getattr(charge, "payment_method", None),
            reference=getattr(charge, "reference", None),
        )
        self.ledger.append(entry)
        self.by_transaction.setdefault(entry.transaction_id, []).append(entry)
        logger.info(
            "charge accepted transaction_id=%s charge_id=%s amount=%s %s",
            entry.transaction_id,
            entry.charge_id,
            amount,
            charge.currency,
        )
        return entry


def _message(status: int, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status)


def _accepted_body(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "message": SUCCESS_MESSAGE,
        "transactionId": entry.transaction_id,
        "chargeId": entry.charge_id,
    }


def _accepted(entry: LedgerEntry) -> JSONResponse:
    return _message(
        200, SUCCESS_MESSAGE, transactionId=entry.transaction_id, chargeId=entry.charge_id
    )


def _declined() -> JSONResponse:
    return _message(402, "Insufficient funds", code="insufficient_funds")


def _unavailable() -> JSONResponse:
    return _message(503, "Service unavailable")


def create_app() -> FastAPI:
    """A FakePay app with its own empty ledger and no faults."""
    app = FastAPI(title="FakePay simulator", docs_url=None, redoc_url=None)
    state = FakePay()

    @app.post("/fakepay")
    async def create_charge(request: Request) -> JSONResponse:
        try:
            # Floats as Decimal, so an amount of 0.1 is exactly 0.1.
            body = json.loads(await request.body(), parse_float=Decimal)
        except ValueError:  # not JSON, or not UTF-8
            return _message(400, "Body must be JSON", code="invalid_request", field="body")
        try:
            charge, digits, amount = _check_charge(body)
        except CardError as error:
            logger.info("charge refused code=%s field=%s", error.code, error.field)
            return _message(400, error.message, code=error.code, field=error.field)

        last4 = digits[-4:]
        fault = state.take_fault(last4, charge.transaction_id)
        if fault is not None:
            mode = fault.spec.mode
            logger.info("fault %s %s transaction_id=%s", fault.id, mode, charge.transaction_id)
            if mode == "decline":
                return _declined()
            if mode == "error":
                return _unavailable()
            if mode == "reject":
                return _message(400, "Charge refused", code=fault.spec.code or "refused")
            if mode == "hang":
                await asyncio.sleep(fault.delay())
                return _unavailable()
            if mode == "accept_then_hang":
                # The charge is taken before the wait: a client that gives up meanwhile never
                # learns of it and has to ask GET /fakepay/{transactionId}.
                entry = state.record(charge, digits, amount, charge.card)
                await asyncio.sleep(fault.delay())
                return _accepted(entry)
            await asyncio.sleep(fault.delay())  # slow: late, then as usual

        if last4 == DECLINE_LAST4:
            return _declined()
        if last4 == ERROR_LAST4:
            return _unavailable()
        return _accepted(state.record(charge, digits, amount, charge.card))

    @app.post("/fakepay/payment-methods", status_code=201)
    async def save_card(request: Request) -> JSONResponse:
        try:
            body = SavedCardRequest.model_validate(json.loads(await request.body()))
        except (ValueError, ValidationError):
            return _message(
                400, "Body must be {card: {number, expiry, name}}", code="invalid_request"
            )
        try:
            # The same checks as a charge, with a placeholder transaction id.
            _check_charge({"card": body.card.model_dump(), "transactionId": "vault"})
        except CardError as error:
            return _message(400, error.message, code=error.code, field=error.field)
        digits = body.card.number.replace(" ", "")
        token = f"pm_{secrets.token_hex(12)}"
        state.vault[token] = VaultedCard(token, digits, body.card.expiry, body.card.name)
        logger.info("card vaulted token=%s", token)
        return JSONResponse(
            {
                "id": token,
                "card": {
                    "number": mask_card_number(digits),
                    "last4": digits[-4:],
                    "expiry": body.card.expiry,
                    "name": body.card.name,
                },
            },
            status_code=201,
        )

    @app.delete("/fakepay/payment-methods/{token}", status_code=204)
    async def forget_card(token: str) -> Response:
        if state.vault.pop(token, None) is None:
            return _message(404, "No such payment method", code="customer_not_found")
        return Response(status_code=204)

    @app.post("/fakepay/charges")
    async def charge_saved_card(request: Request) -> JSONResponse:
        """Charge a vaulted card. A repeated Idempotency-Key gets the first answer again
        without charging, as long as the body is the same (Stripe's semantics); 5xx answers
        are not kept, so a retry after one is a new try."""
        key = request.headers.get("Idempotency-Key")
        try:
            raw = json.loads(await request.body(), parse_float=Decimal)
            charge = TokenChargeRequest.model_validate(raw)
            amount = _parse_amount(charge.amount)
        except (ValueError, ValidationError):
            return _message(400, "Malformed charge", code="invalid_request", field="body")
        except CardError as error:
            return _message(400, error.message, code=error.code, field=error.field)
        fingerprint = {k: str(v) for k, v in charge.model_dump().items()}
        if key is not None and key in state.answers:
            first_body, status, answer = state.answers[key]
            if first_body != fingerprint:
                return _message(
                    409,
                    "Idempotency-Key reused with another request",
                    code="idempotency_key_reused",
                )
            return JSONResponse(answer, status_code=status, headers={"Idempotent-Replayed": "true"})
        if key is not None and key in state.in_flight:
            # Stripe answers a concurrent request with the same key 409 too.
            return _message(409, "A request with this key is in progress", code="key_in_use")
        if key is not None:
            state.in_flight.add(key)
        try:
            status, answer = await _charge_vaulted(charge, amount)
        finally:
            state.in_flight.discard(key or "")
        if key is not None and status < 500:
            state.answers[key] = (fingerprint, status, answer)
        return JSONResponse(answer, status_code=status)

    async def _charge_vaulted(
        charge: TokenChargeRequest, amount: Decimal | None
    ) -> tuple[int, dict[str, Any]]:
        behaviour = state.behaviour
        if behaviour.latency_ms:
            await asyncio.sleep(behaviour.latency_ms / 1000)
        card = state.vault.get(charge.payment_method)
        if card is None:
            return 404, {"message": "No such customer", "code": "customer_not_found"}
        last4 = card.number[-4:]
        fault = state.take_fault(last4, charge.transaction_id)
        if fault is not None:
            mode = fault.spec.mode
            logger.info("fault %s %s transaction_id=%s", fault.id, mode, charge.transaction_id)
            if mode == "decline":
                return 402, {"message": "Insufficient funds", "code": "insufficient_funds"}
            if mode == "reject":
                return 400, {"message": "Charge refused", "code": fault.spec.code or "refused"}
            if mode in ("error", "hang"):
                if mode == "hang":
                    await asyncio.sleep(fault.delay())
                return 503, {"message": "Service unavailable"}
            if mode == "accept_then_hang":
                entry = state.record(charge, card.number, amount, card)
                await asyncio.sleep(fault.delay())
                return 200, _accepted_body(entry)
            await asyncio.sleep(fault.delay())
        if last4 == DECLINE_LAST4:
            return 402, {"message": "Insufficient funds", "code": "insufficient_funds"}
        if last4 == ERROR_LAST4:
            return 503, {"message": "Service unavailable"}
        if last4 == CURRENCY_MISMATCH_LAST4:
            return 400, {
                "message": "Card cannot be charged in this currency",
                "code": "currency_mismatch",
            }
        draw = state.random.random()
        if draw < behaviour.error_rate:
            return 503, {"message": "Service unavailable"}
        if draw < behaviour.error_rate + behaviour.decline_rate:
            return 402, {"message": "Insufficient funds", "code": "insufficient_funds"}
        return 200, _accepted_body(state.record(charge, card.number, amount, card))

    @app.get("/fakepay/{transaction_id}")
    async def charge_status(transaction_id: str) -> JSONResponse:
        entries = state.by_transaction.get(transaction_id)
        if not entries:
            return _message(404, "No such transaction")
        first = entries[0]
        return JSONResponse(
            {
                "transactionId": transaction_id,
                "status": "succeeded",
                "chargeId": first.charge_id,
                "amount": None if first.amount is None else str(first.amount),
                "currency": first.currency,
                "charges": len(entries),
            }
        )

    @app.get("/_control/ledger")
    async def ledger() -> Response:
        body = [entry.model_dump(mode="json", by_alias=True) for entry in state.ledger]
        return JSONResponse(body)

    @app.delete("/_control/ledger", status_code=204)
    async def clear_ledger() -> None:
        state.ledger.clear()
        state.by_transaction.clear()
        state.answers.clear()

    @app.post("/_control/faults", status_code=201)
    async def add_fault(spec: FaultRequest) -> dict[str, str]:
        return {"id": state.add_fault(spec)}

    @app.put("/_control/behaviour")
    async def set_behaviour(behaviour: Behaviour) -> Behaviour:
        state.behaviour = behaviour
        return behaviour

    @app.delete("/_control/faults", status_code=204)
    async def clear_faults() -> None:
        state.faults.clear()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="FakePay payment provider simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    # A short graceful shutdown: a request held by a `hang` fault must not hold up a stop.
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
