"""The billing platform's API as the sync reads it (docs/billing_api.md): pages of clients
and invoices, with retries, a circuit breaker per host and checks on what comes back.

Faults fall in three kinds, each handled once, here:
- short ones (connection reset, timeout, 5xx, 429, an unreadable body) are retried with
  exponential backoff and jitter (tenacity) for up to `retry_for_seconds`, honouring
  Retry-After; then `PlatformUnavailable` tells the job to park;
- a host that keeps failing opens its circuit breaker (purgatory): calls fail at once with
  `PlatformUnavailable` until it lets one call through to test the host;
- answers no retry can mend (the key refused, a page that never ends, a huge page) raise
  `PlatformRejected` or `BadPlatformData`, and the job parks with that error.
An invoice that fails the checks is skipped alone (`Page.skipped`), never half-written.
"""

import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from pydantic import BaseModel, BeforeValidator, StringConstraints, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
)

from common.logging import get_logger
from common.metrics import PROVIDER_CALLS, breaker_listener
from sync.config import SyncSettings
from sync.events import ImportedClient, ImportedInvoice, ImportedStatus

log = get_logger(__name__)


class PlatformUnavailable(Exception):
    """The platform could not be read for now (network, 5xx, rate limit, breaker open)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PlatformRejected(Exception):
    """The platform refused the request itself (401/403/404/400): retrying will not help."""


class BadPlatformData(Exception):
    """The platform answered with something no invoice import can use."""


class _Transient(Exception):
    """One failed attempt that is worth another (internal to the retry loop)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]


def _amount(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise ValueError("amount must be a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError("amount is not a number") from None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or (isinstance(exponent, int) and exponent < -2):
        raise ValueError("amount must have at most two decimals")
    if amount < 0 or amount > Decimal("9999999999.99"):
        raise ValueError("amount is out of range")
    return amount


class PlatformClientRecord(BaseModel):
    id: Id
    name: Name
    email: Email


class PlatformInvoice(BaseModel):
    id: Id
    number: Id
    client_id: Id
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    amount: Annotated[Decimal, BeforeValidator(_amount)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    status: ImportedStatus
    due_date: date
    issued_at: datetime


@dataclass
class Page:
    """One page as read: the records that passed the checks, the ids of those that did not,
    and where the next page starts (None: this was the last)."""

    clients: list[ImportedClient] = field(default_factory=list)
    invoices: list[ImportedInvoice] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    next_cursor: str | None = None


def _wait(settings: SyncSettings) -> Any:
    """Exponential backoff with full jitter, or the platform's Retry-After when it gave one."""

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            return error.retry_after
        ceiling = min(
            settings.retry_max_wait_seconds,
            settings.retry_base_seconds * 2 ** (state.attempt_number - 1),
        )
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret

    return wait


class PlatformApi:
    """Reads one platform account's pages; shared by every job of a worker process."""

    def __init__(self, http: httpx.AsyncClient, settings: SyncSettings) -> None:
        self.http = http
        self.settings = settings
        # One breaker per host, in this process: a failing platform stops being called by
        # this worker, whichever owner's job asks.
        self.breakers = AsyncCircuitBreakerFactory(
            default_threshold=settings.breaker_threshold,
            default_ttl=settings.breaker_open_seconds,
            exclude=[PlatformRejected, BadPlatformData, _RateLimited],
        )
        self.breakers.add_listener(breaker_listener("billing_platform"))

    async def page(self, base_url: str, api_key: str, kind: str, cursor: str | None) -> Page:
        """One page of "clients" or "invoices" after the cursor, checked."""
        params = {"limit": str(self.settings.page_size)}
        if cursor is not None:
            params["cursor"] = cursor
        body = await self._get(base_url, api_key, f"/v1/{kind}", params)
        return self._read_page(body, kind, cursor)

    async def client(self, base_url: str, api_key: str, client_id: str) -> ImportedClient | None:
        """One client by id (for an invoice whose client was created after the client pages)."""
        try:
            body = await self._get(base_url, api_key, f"/v1/clients/{client_id}", {})
        except PlatformRejected:
            return None
        try:
            client = PlatformClientRecord.model_validate(body)
        except ValidationError:
            return None
        return ImportedClient(external_id=client.id, name=client.name, email=client.email)

    async def _get(self, base_url: str, api_key: str, path: str, params: dict[str, str]) -> Any:
        host = urlsplit(base_url).netloc
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Transient),
            wait=_wait(self.settings),
            stop=stop_after_delay(self.settings.retry_for_seconds),
            reraise=True,
        )
        failures: list[str] = []
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        return await self._attempt(host, base_url, api_key, path, params)
                    except _Transient as exc:
                        failures.append(exc.reason)
                        raise
        except _Transient as exc:
            raise PlatformUnavailable(exc.reason, exc.retry_after) from None
        except _BreakerOpen:
            # Not retried here: the job parks until the breaker lets a call through.
            reason = f"circuit breaker open for {host}"
            if failures:
                reason += f" (after: {failures[-1]})"
            raise PlatformUnavailable(reason, self.settings.breaker_open_seconds) from None
        raise PlatformUnavailable("no attempt was made")  # pragma: no cover - tenacity tries

    async def _attempt(
        self, host: str, base_url: str, api_key: str, path: str, params: dict[str, str]
    ) -> Any:
        operation = path.split("/")[2] if path.count("/") >= 2 else path
        try:
            breaker = await self.breakers.get_breaker(host)
            async with breaker:
                body = await self._call(base_url, api_key, path, params)
        except OpenedState:
            _count(operation, "breaker_open")
            raise _BreakerOpen() from None
        except _Transient:
            _count(operation, "unavailable")
            raise
        except PlatformRejected:
            _count(operation, "rejected")
            raise
        except BadPlatformData:
            _count(operation, "bad_data")
            raise
        except _RateLimited as exc:
            _count(operation, "rate_limited")
            # A rate limit is the platform working as documented: no breaker failure.
            if exc.retry_after > self.settings.max_retry_after_seconds:
                raise PlatformUnavailable("rate limited", exc.retry_after) from None
            raise _Transient("rate limited", exc.retry_after) from None
        _count(operation, "ok")
        return body

    async def _call(self, base_url: str, api_key: str, path: str, params: dict[str, str]) -> Any:
        url = base_url.rstrip("/") + path
        try:
            response = await self.http.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
                timeout=self.settings.request_timeout_seconds,
            )
        except httpx.TimeoutException:
            raise _Transient("timed out") from None
        except httpx.TransportError as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from None
        if response.status_code == 429:
            raise _RateLimited(_retry_after(response, 1.0))
        if response.status_code >= 500:
            raise _Transient(f"platform answered {response.status_code}", None)
        if response.status_code in (401, 403):
            raise PlatformRejected("the platform refused the API key")
        if response.status_code >= 400:
            raise PlatformRejected(f"the platform answered {response.status_code}")
        if len(response.content) > 20_000_000:
            raise BadPlatformData("the platform sent a page over 20 MB")
        try:
            return json.loads(response.content)
        except ValueError:
            # Usually a body cut short: worth another read before calling it bad.
            raise _Transient("the platform sent a body that is not JSON") from None

    def _read_page(self, body: Any, kind: str, cursor: str | None) -> Page:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise BadPlatformData("a page without a data list")
        items: list[Any] = body["data"]
        if len(items) > self.settings.max_page_items:
            raise BadPlatformData(
                f"a page of {len(items)} items, above {self.settings.max_page_items}"
            )
        next_cursor = body.get("next_cursor")
        if next_cursor is not None and (not isinstance(next_cursor, str) or len(next_cursor) > 200):
            raise BadPlatformData("a page with an unusable next_cursor")
        if next_cursor is not None and next_cursor == cursor:
            raise BadPlatformData("the platform sent the same page again (a page that never ends)")
        page = Page(next_cursor=next_cursor)
        for item in items:
            if kind == "clients":
                self._read_client(item, page)
            else:
                self._read_invoice(item, page)
        return page

    @staticmethod
    def _read_client(item: Any, page: Page) -> None:
        try:
            client = PlatformClientRecord.model_validate(item)
        except ValidationError as exc:
            page.problems.append(_problem(item, exc))
            page.skipped.append(_item_id(item))
            return
        page.clients.append(
            ImportedClient(external_id=client.id, name=client.name, email=client.email)
        )

    def _read_invoice(self, item: Any, page: Page) -> None:
        try:
            invoice = PlatformInvoice.model_validate(item)
        except ValidationError as exc:
            page.problems.append(_problem(item, exc))
            page.skipped.append(_item_id(item))
            return
        page.invoices.append(
            ImportedInvoice(
                external_id=invoice.id,
                number=invoice.number,
                client_external_id=invoice.client_id,
                description=invoice.description,
                amount=invoice.amount,
                currency=invoice.currency,
                status=invoice.status,
                due_date=invoice.due_date,
                issued_at=invoice.issued_at,
            )
        )


def _count(operation: str, outcome: str) -> None:
    PROVIDER_CALLS.labels("billing_platform", operation, outcome).inc()


class _BreakerOpen(Exception):
    """The host's circuit breaker is open (internal to the retry loop)."""


class _RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def _item_id(item: Any) -> str:
    value = item.get("id") if isinstance(item, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 64 else ""


def _problem(item: Any, error: ValidationError) -> str:
    """Which record and which fields were wrong; never the values (they may be anything)."""
    fields = sorted({".".join(str(p) for p in e["loc"]) or "record" for e in error.errors()})
    return f"record {_item_id(item) or '(no id)'}: bad {', '.join(fields)}"
