"""The owners' billing platform (seed 000's third-party API), rebuilt from docs/billing_api.md.

Accounts, each with an API key; clients and invoices listed in the order they were created,
paged with an opaque cursor, with no filters, no sorting and no "changed since". Past a rate
limit it answers 429 with Retry-After. Tests drive it through `/_control`: seed accounts,
change data (new invoices, status changes, removals) and inject faults (connection resets,
503s, hangs, slow pages, rate limiting, outages, bad pages).

Run it with `python -m simulators.billing_platform --host 127.0.0.1 --port 9100`.
"""

import argparse
import asyncio
import bisect
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

logger = logging.getLogger("simulators.billing_platform")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
STATUSES = ("pending", "past_due", "paid", "void")
# Faults that change a real page rather than replace the answer.
PAGE_FAULTS = ("repeat_page", "huge_page", "missing_fields", "absurd_amount")

_IDS = itertools.count(1)

FaultMode = Literal[
    "reset",  # the connection is closed without an answer
    "error",  # 503 Service Unavailable
    "hang",  # no answer for `delay` seconds, then 503
    "slow",  # the right answer, `delay` seconds late
    "rate_limit",  # 429 with Retry-After: `retry_after`
    "malformed",  # 200 with a body that is not JSON
    "missing_fields",  # 200 with invoices lacking their amount and status
    "absurd_amount",  # 200 with one invoice of an amount no invoice has
    "repeat_page",  # 200 with the same cursor as was asked: a page that never ends
    "huge_page",  # 200 with far more items than the limit asked for
]


class Client(BaseModel):
    id: str
    name: str
    email: str
    created_at: datetime


class Invoice(BaseModel):
    id: str
    number: str
    client_id: str
    description: str
    amount: str  # decimal text, two decimals
    currency: str
    status: str
    due_date: date
    issued_at: datetime
    updated_at: datetime


@dataclass
class Account:
    id: str
    api_key: str
    name: str
    clients: dict[str, Client] = field(default_factory=dict)
    # Insertion order is creation order: the listing walks these in order.
    invoices: dict[str, Invoice] = field(default_factory=dict)
    # Ids are unique across the whole platform (a counter shared by every account), as a real
    # platform's are; they grow with creation, which is what the listing's cursor relies on.
    counter: "itertools.count[int]" = field(default_factory=lambda: _IDS)
    sequence: int = 0
    # Rate limiting: request times in the current window.
    window_start: float = 0.0
    window_count: int = 0

    def next_id(self, prefix: str) -> str:
        self.sequence = next(self.counter)
        return f"{prefix}_{self.sequence:010d}"


class AccountSeed(BaseModel):
    name: str = "Owner"
    api_key: str | None = None
    clients: Annotated[int, Field(ge=0, le=100_000)] = 3
    invoices: Annotated[int, Field(ge=0, le=1_000_000)] = 10


class InvoiceSeed(BaseModel):
    client_id: str | None = None
    amount: str = "100.00"
    currency: str = "USD"
    status: str = "pending"
    description: str = "Services"
    due_date: date | None = None


class StatusChange(BaseModel):
    status: str


class FaultRequest(BaseModel):
    mode: FaultMode
    # Which requests: an account (by id), a path prefix ("/v1/invoices"); none means all.
    account_id: str | None = None
    path: str | None = None
    seconds: Annotated[float, Field(gt=0)] | None = None  # lasts this long (an outage)
    times: Annotated[int, Field(ge=1)] | None = None  # or this many requests
    delay: Annotated[float, Field(ge=0)] | None = None
    retry_after: Annotated[int, Field(ge=0)] = 1


@dataclass
class Fault:
    id: str
    spec: FaultRequest
    expires_at: float | None
    remaining: int | None

    def matches(self, account: Account | None, path: str) -> bool:
        wanted = self.spec.account_id
        if wanted is not None and (account is None or account.id != wanted):
            return False
        return self.spec.path is None or path.startswith(self.spec.path)


class Platform:
    """The simulator's whole state; one event loop, so no await splits a change."""

    def __init__(self, rate_limit: int, rate_window: float) -> None:
        self.accounts: dict[str, Account] = {}
        self.by_key: dict[str, Account] = {}
        self.faults: list[Fault] = []
        self.rate_limit = rate_limit
        self.rate_window = rate_window
        self.requests = 0

    def create_account(self, seed: AccountSeed) -> Account:
        account_id = f"acct_{secrets.token_hex(6)}"
        api_key = seed.api_key or f"sk_test_{secrets.token_hex(16)}"
        account = Account(account_id, api_key, seed.name)
        self.accounts[account_id] = account
        self.by_key[api_key] = account
        for n in range(seed.clients):
            self.add_client(account, f"{seed.name} client {n + 1}")
        client_ids = list(account.clients)
        for n in range(seed.invoices):
            client = client_ids[n % len(client_ids)] if client_ids else None
            amount = f"{100 + (n % 900)}.{n % 100:02d}"
            self.add_invoice(account, InvoiceSeed(client_id=client, amount=amount))
        return account

    def add_client(self, account: Account, name: str) -> Client:
        client_id = account.next_id("cli")
        email = f"{client_id}@clients.example.com"
        client = Client(id=client_id, name=name, email=email, created_at=_now())
        account.clients[client_id] = client
        return client

    def add_invoice(self, account: Account, seed: InvoiceSeed) -> Invoice:
        if seed.client_id is None or seed.client_id not in account.clients:
            client_id = self.add_client(account, f"{account.name} client").id
        else:
            client_id = seed.client_id
        invoice_id = account.next_id("inv")
        now = _now()
        invoice = Invoice(
            id=invoice_id,
            number=f"INV-{account.sequence:06d}",
            client_id=client_id,
            description=seed.description,
            amount=seed.amount,
            currency=seed.currency,
            status=seed.status,
            due_date=seed.due_date or (now + timedelta(days=30)).date(),
            issued_at=now,
            updated_at=now,
        )
        account.invoices[invoice_id] = invoice
        return invoice

    def add_fault(self, spec: FaultRequest) -> str:
        expires = time.monotonic() + spec.seconds if spec.seconds is not None else None
        fault = Fault(f"flt_{secrets.token_hex(6)}", spec, expires, spec.times)
        self.faults.append(fault)
        return fault.id

    def take_fault(self, account: Account | None, path: str) -> Fault | None:
        now = time.monotonic()
        self.faults = [f for f in self.faults if f.expires_at is None or now < f.expires_at]
        for fault in reversed(self.faults):
            if fault.matches(account, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                return fault
        return None

    def over_rate_limit(self, account: Account) -> bool:
        if self.rate_limit <= 0:
            return False
        now = time.monotonic()
        if now - account.window_start >= self.rate_window:
            account.window_start, account.window_count = now, 0
        account.window_count += 1
        return account.window_count > self.rate_limit


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _page(records: dict[str, Any], cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
    """Records after the cursor (the id of the last record of the previous page), and the
    next cursor. Ids grow with creation and a dict keeps insertion order, so the ids are
    sorted: a bisection finds the start, and a removed record does not shift later pages."""
    ids = list(records)
    start = 0 if cursor is None else bisect.bisect_right(ids, cursor)
    window = ids[start : start + limit + 1]
    page = [records[record_id] for record_id in window[:limit]]
    next_cursor = page[-1].id if len(window) > limit else None
    return page, next_cursor


def create_app(rate_limit: int = 0, rate_window: float = 1.0) -> FastAPI:
    """A platform with no accounts; `rate_limit` requests per window per account (0: none)."""
    app = FastAPI(title="Billing platform simulator", docs_url=None, redoc_url=None)
    state = Platform(rate_limit, rate_window)
    app.state.platform = state

    def account_of(request: Request) -> Account | None:
        header = request.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip()
        return state.by_key.get(key) if key else None

    async def admit(
        request: Request, path: str
    ) -> tuple[Account | None, Response | None, str | None]:
        """The caller's account, or the answer that replaces the real one (no key, a fault,
        the rate limit), and the page fault the listing applies to its real page."""
        state.requests += 1
        account = account_of(request)
        if account is None:
            return None, _error(401, "unauthorized", "Missing or unknown API key"), None
        fault = state.take_fault(account, path)
        if fault is not None:
            logger.info(
                "fault %s %s account=%s path=%s", fault.id, fault.spec.mode, account.id, path
            )
            mode = fault.spec.mode
            if mode in PAGE_FAULTS:
                return account, None, mode
            answer = await _fault_answer(fault)
            if answer is not None:
                return account, answer, None
        if state.over_rate_limit(account):
            headers = {"Retry-After": str(max(1, round(state.rate_window)))}
            return account, _error(429, "rate_limited", "Too many requests", headers), None
        return account, None, None

    def listing(request: Request, items: dict[str, Any], page_fault: str | None) -> Response:
        try:
            limit = int(request.query_params.get("limit", DEFAULT_PAGE_SIZE))
        except ValueError:
            return _error(400, "invalid_request", "limit must be an integer")
        if not 1 <= limit <= MAX_PAGE_SIZE:
            return _error(400, "invalid_request", f"limit must be 1 to {MAX_PAGE_SIZE}")
        cursor = request.query_params.get("cursor") or None
        page, next_cursor = _page(items, cursor, limit)
        data = [item.model_dump(mode="json") for item in page]
        if page_fault == "repeat_page":
            # A platform bug: the next cursor is the one asked for, so the page never ends.
            next_cursor = cursor or "inv_0"
        elif page_fault == "huge_page":
            data = (data or [{}]) * (MAX_PAGE_SIZE * 20 // max(1, len(data)))
        elif page_fault == "missing_fields":
            for item in data:
                item.pop("amount", None)
                item.pop("status", None)
        elif page_fault == "absurd_amount" and data:
            data[0]["amount"] = "99999999999999999999.99"
        body = {"data": data, "next_cursor": next_cursor, "has_more": next_cursor is not None}
        return JSONResponse(body)

    async def list_of(request: Request, path: str, kind: str) -> Response:
        account, answer, page_fault = await admit(request, path)
        if answer is not None or account is None:
            return answer or _error(401, "unauthorized", "Missing or unknown API key")
        items = account.clients if kind == "clients" else account.invoices
        return listing(request, items, page_fault)

    @app.get("/v1/account")
    async def get_account(request: Request) -> Response:
        account, answer, _ = await admit(request, "/v1/account")
        if answer is not None or account is None:
            return answer or _error(401, "unauthorized", "Missing or unknown API key")
        return JSONResponse({"id": account.id, "name": account.name})

    @app.get("/v1/clients")
    async def list_clients(request: Request) -> Response:
        return await list_of(request, "/v1/clients", "clients")

    @app.get("/v1/invoices")
    async def list_invoices(request: Request) -> Response:
        return await list_of(request, "/v1/invoices", "invoices")

    @app.get("/v1/clients/{client_id}")
    async def get_client(client_id: str, request: Request) -> Response:
        account, answer, _ = await admit(request, "/v1/clients")
        if answer is not None or account is None:
            return answer or _error(401, "unauthorized", "Missing or unknown API key")
        client = account.clients.get(client_id)
        if client is None:
            return _error(404, "not_found", "No such client")
        return JSONResponse(client.model_dump(mode="json"))

    # --- control API ---------------------------------------------------------------------

    def account_or_404(account_id: str) -> Account | Response:
        account = state.accounts.get(account_id)
        return account if account is not None else _error(404, "not_found", "No such account")

    @app.post("/_control/accounts", status_code=201)
    async def seed_account(seed: AccountSeed) -> dict[str, Any]:
        account = state.create_account(seed)
        return {"id": account.id, "api_key": account.api_key}

    @app.get("/_control/accounts/{account_id}/invoices")
    async def all_invoices(account_id: str) -> Response:
        account = account_or_404(account_id)
        if isinstance(account, Response):
            return account
        return JSONResponse([i.model_dump(mode="json") for i in account.invoices.values()])

    @app.get("/_control/accounts/{account_id}/clients")
    async def all_clients(account_id: str) -> Response:
        account = account_or_404(account_id)
        if isinstance(account, Response):
            return account
        return JSONResponse([c.model_dump(mode="json") for c in account.clients.values()])

    @app.post("/_control/accounts/{account_id}/invoices", status_code=201)
    async def add_invoice(account_id: str, seed: InvoiceSeed) -> Response:
        account = account_or_404(account_id)
        if isinstance(account, Response):
            return account
        return JSONResponse(state.add_invoice(account, seed).model_dump(mode="json"), 201)

    @app.post("/_control/accounts/{account_id}/invoices/{invoice_id}/status")
    async def change_status(account_id: str, invoice_id: str, change: StatusChange) -> Response:
        account = account_or_404(account_id)
        if isinstance(account, Response):
            return account
        invoice = account.invoices.get(invoice_id)
        if invoice is None or change.status not in STATUSES:
            return _error(404, "not_found", "No such invoice or status")
        invoice.status = change.status
        invoice.updated_at = _now()
        return JSONResponse(invoice.model_dump(mode="json"))

    @app.delete("/_control/accounts/{account_id}/invoices/{invoice_id}", status_code=204)
    async def remove_invoice(account_id: str, invoice_id: str) -> Response:
        account = account_or_404(account_id)
        if isinstance(account, Response):
            return account
        if account.invoices.pop(invoice_id, None) is None:
            return _error(404, "not_found", "No such invoice")
        return Response(status_code=204)

    @app.post("/_control/faults", status_code=201)
    async def add_fault(spec: FaultRequest) -> dict[str, str]:
        return {"id": state.add_fault(spec)}

    @app.delete("/_control/faults", status_code=204)
    async def clear_faults() -> None:
        state.faults.clear()

    @app.get("/_control/stats")
    async def stats() -> dict[str, int]:
        return {"requests": state.requests}

    return app


async def _fault_answer(fault: Fault) -> Response | None:
    """The answer of a fault that replaces the whole response; None for a slow one."""
    mode, delay = fault.spec.mode, fault.spec.delay
    if mode == "reset":
        return _ResetResponse()
    if mode == "error":
        return _error(503, "unavailable", "Service unavailable", {"Retry-After": "1"})
    if mode == "hang":
        await asyncio.sleep(delay if delay is not None else 30)
        return _error(503, "unavailable", "Service unavailable")
    if mode == "rate_limit":
        headers = {"Retry-After": str(fault.spec.retry_after)}
        return _error(429, "rate_limited", "Too many requests", headers)
    if mode == "malformed":
        return Response(b'{"data": [{"id": "inv_', media_type="application/json")
    await asyncio.sleep(delay if delay is not None else 2)  # slow: late, then as usual
    return None


class _ResetResponse(Response):
    """Starts a response, sends part of it and drops the connection: what a client sees
    when the connection is reset mid-answer."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})
        raise ConnectionResetError("simulated connection reset")


def main() -> None:
    parser = argparse.ArgumentParser(description="Billing platform simulator (docs/billing_api.md)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--rate-limit", type=int, default=0, help="requests per window per account")
    parser.add_argument("--rate-window", type=float, default=1.0)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(args.rate_limit, args.rate_window),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
