"""Owners using Ledgerline at once, through the gateway only: a locust scenario.

Each simulated user is one owner, signing in at the mock OpenID Connect provider as a browser
does and then working: refreshing tokens, adding clients, creating invoices (some paid by
card at creation), listing them with filters, reading one, paying by card (some cards
declining), topping up the wallet, sending invoices by email (some to addresses that bounce),
saving a client's card for the monthly billing run, and asking for a sync with the billing
platform. `scripts/load.py` starts the suite and runs this; docs/benchmarks.md ("Load").

Each user comes from an address of its own (`X-Forwarded-For`, which the load test's gateway
trusts from 127.0.0.1 only), so the gateway's per-address limits apply per owner as they do
in production instead of to the whole test as one client.

An answer is a failure when it is a 5xx other than a 503 with `Retry-After`, a 429 without
`Retry-After`, or any status the operation is not expected to give here. Every answer's
status is counted per operation and written as JSON to `LOAD_REPORT` when the run ends.

Environment: LOAD_PROVIDER (the OpenID Connect provider's URL), LOAD_BILLING_PLATFORM (the
billing platform simulator's URL, empty: no syncs), LOAD_BOUNCING (comma-separated
addresses the email providers' simulator bounces), LOAD_REPORT (the JSON's path),
LOAD_TOUR (1: every step once first).
"""

import itertools
import json
import os
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import requests
from locust import HttpUser, between, events, task
from locust.clients import ResponseContextManager
from locust.exception import RescheduleTask

PROVIDER = os.environ.get("LOAD_PROVIDER", "")
BILLING_PLATFORM = os.environ.get("LOAD_BILLING_PLATFORM", "")
BOUNCING = [a for a in os.environ.get("LOAD_BOUNCING", "").split(",") if a]
REPORT = os.environ.get("LOAD_REPORT", "")
# Set: each owner first takes every step once (`Owner.tour`), then the random mix.
TOUR = os.environ.get("LOAD_TOUR", "") == "1"

# FakePay's test cards (docs/fakepay.md): the last four digits decide.
GOOD_CARD = {"number": "4242 4242 4242 4242", "name": "Load Owner", "expiry": "01-2040"}
DECLINING_CARD = {"number": "4000 0000 0000 0002", "name": "Load Owner", "expiry": "01-2040"}
# Share of card payments and top-ups made with the declining card, of sends that bounce.
DECLINE_SHARE = 0.1
BOUNCE_SHARE = 0.15

# Every operation the scenario calls, by the name it is reported under.
OPERATIONS = [
    "/api/auth/{provider}/login",
    "/api/auth/{provider}/callback",
    "/api/auth/refresh",
    "/api/clients",
    "/api/invoices",
    "/api/invoices?filters",
    "/api/invoices/{id}",
    "/invoice/pay/{id}",
    "/invoice",
    "/api/wallet/topups",
    "/api/invoices/{id}/send",
    "/api/payment-methods",
    "/api/users/me",
    "/api/wallet",
    "/api/emails",
    *(["/api/sync/connections", "/api/sync/runs"] if BILLING_PLATFORM else []),
]
# A sign-in answered 429 or 503 is tried again after Retry-After, as a browser's user would;
# an owner still signed out after that waits before trying again rather than hammering.
SIGN_IN_ATTEMPTS = 3
SIGN_IN_BACKOFF_SECONDS = 15.0

_numbers = itertools.count(1)
_lock = threading.Lock()
# Per operation (locust's name): how many answers of each status.
statuses: dict[str, Counter[int]] = defaultdict(Counter)
# 429 and 503 answers without Retry-After, per operation (each is also a failure).
missing_retry_after: Counter[str] = Counter()


def forwarded_address(number: int) -> str:
    """A distinct client address per simulated user, in 10.0.0.0/8."""
    return f"10.{(number >> 16) & 255}.{(number >> 8) & 255}.{number & 255}"


@events.request.add_listener
def _count(name: str, response: Any, exception: Any, **_: Any) -> None:
    status = getattr(response, "status_code", 0) or 0
    with _lock:
        statuses[name][status] += 1
        if status in (429, 503) and not response.headers.get("Retry-After"):
            missing_retry_after[name] += 1


@events.quitting.add_listener
def _write_report(environment: Any, **_: Any) -> None:
    """Per operation: requests, failures, p50/p95 (ms) and answers by status; every
    operation the scenario has, and each distinct failure."""
    if not REPORT:
        return
    stats = environment.stats
    with _lock:
        report = {
            "operations": OPERATIONS,
            "endpoints": {
                name: {
                    "method": method,
                    "requests": entry.num_requests,
                    "failures": entry.num_failures,
                    "p50": entry.get_response_time_percentile(0.5),
                    "p95": entry.get_response_time_percentile(0.95),
                    "statuses": dict(statuses.get(name, {})),
                }
                for (name, method), entry in sorted(stats.entries.items())
            },
            "missing_retry_after": dict(missing_retry_after),
            "errors": [
                {"name": error.name, "error": str(error.error), "count": error.occurrences}
                for error in stats.errors.values()
            ],
            "total": {
                "requests": stats.total.num_requests,
                "failures": stats.total.num_failures,
                "p50": stats.total.get_response_time_percentile(0.5),
                "p95": stats.total.get_response_time_percentile(0.95),
                "seconds": stats.total.last_request_timestamp - stats.total.start_time
                if stats.total.last_request_timestamp
                else 0,
            },
        }
    with open(REPORT, "w") as out:
        json.dump(report, out, indent=2, sort_keys=True)


class Owner(HttpUser):
    """One owner of a small business, signed in through the gateway."""

    wait_time = between(1, 3)

    def on_start(self) -> None:
        number = next(_numbers)
        self.client.headers["X-Forwarded-For"] = forwarded_address(number)
        self.subject = f"load-{number}-{uuid.uuid4().hex[:6]}@example.com"
        self.access_token = ""
        self.refresh_token = ""
        self.clients: list[int] = []
        self.invoices: list[str] = []
        self.connected = False
        self.sign_in_after = 0.0
        self.sign_in()
        try:
            self.add_client()
            self.top_up(GOOD_CARD, amount="20.00")
            self.save_card()
            if BILLING_PLATFORM:
                self.connect_billing_platform()
            if TOUR:
                self.tour()
        except RescheduleTask:
            pass  # signed out: the tasks sign in again and add what is missing

    # --- helpers ---------------------------------------------------------------------------

    def call(
        self, method: str, path: str, name: str, expected: tuple[int, ...], **kwargs: Any
    ) -> requests.Response:
        """A request through the gateway with the owner's token; anything but `expected` (and a
        429 or 503 with Retry-After) is a failure. An owner without a token (its sign-in
        failed) signs in first, as the app sends a signed-out user to the sign-in page."""
        if not self.access_token:
            if time.monotonic() < self.sign_in_after:
                raise RescheduleTask()  # signed out, waiting before trying again
            self.sign_in()
            if not self.access_token:
                self.sign_in_after = time.monotonic() + SIGN_IN_BACKOFF_SECONDS
                raise RescheduleTask()
        headers = {"Authorization": f"Bearer {self.access_token}", **kwargs.pop("headers", {})}
        with self.client.request(
            method, path, name=name, headers=headers, catch_response=True, **kwargs
        ) as answer:
            judge(answer, expected)
            return answer

    def sign_in(self) -> None:
        """The browser's way: the gateway's login, the provider's form, the callback."""
        for _ in range(SIGN_IN_ATTEMPTS):
            wait = self._sign_in_once()
            if wait is None:
                return
            time.sleep(wait)

    def _sign_in_once(self) -> float | None:
        """None when done (or failed for good); the seconds to wait after a 429."""
        with self.client.get(
            "/api/auth/mock/login",
            name="/api/auth/{provider}/login",
            allow_redirects=False,
            catch_response=True,
        ) as login:
            judge(login, (302,))
        if login.status_code in (429, 503):
            return retry_after(login)
        if login.status_code != 302:
            return None
        # The provider is the outside world: not through the gateway, not in the figures.
        form = requests.post(
            login.headers["location"],
            data={"sub": self.subject, "action": "authorize"},
            allow_redirects=False,
            timeout=60,
        )
        if form.status_code != 302:
            return None
        callback = form.headers["location"].replace(PROVIDER, "", 1)
        with self.client.get(
            callback,
            name="/api/auth/{provider}/callback",
            allow_redirects=False,
            catch_response=True,
        ) as done:
            judge(done, (200,))
        if done.status_code in (429, 503):
            return retry_after(done)
        if done.status_code == 200:
            tokens = done.json()
            self.access_token = tokens["access_token"]
            self.refresh_token = tokens["refresh_token"]
        return None

    def add_client(self) -> None:
        number = len(self.clients) + 1
        answer = self.call(
            "POST",
            "/api/clients",
            "/api/clients",
            (201,),
            json={"name": f"Client {number} of {self.subject}", "email": self.client_email()},
        )
        if answer.status_code == 201:
            self.clients.append(answer.json()["id"])

    def client_email(self) -> str:
        if BOUNCING and random.random() < BOUNCE_SHARE:
            return random.choice(BOUNCING)
        return f"ap-{uuid.uuid4().hex[:8]}@example.com"

    def top_up(self, card: dict[str, str], amount: str = "5.00") -> None:
        self.call(
            "POST",
            "/api/wallet/topups",
            "/api/wallet/topups",
            (201, 402),
            json={"amount": amount, "currency": "USD", "card": card},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )

    def save_card(self) -> None:
        """The first client's card, saved with consent for the monthly billing run."""
        if self.clients:
            self.call(
                "POST",
                "/api/payment-methods",
                "/api/payment-methods",
                (201,),
                json={"client_id": self.clients[0], "autopay_consent": True, "card": GOOD_CARD},
            )

    def connect_billing_platform(self) -> None:
        # The owner's account on the platform is made at the simulator, as the owner would
        # have one already; then connected through the gateway.
        account = requests.post(
            f"{BILLING_PLATFORM}/_control/accounts",
            json={"name": self.subject, "clients": 2, "invoices": 5},
            timeout=60,
        )
        if account.status_code >= 300:
            return
        connected = self.call(
            "POST",
            "/api/sync/connections",
            "/api/sync/connections",
            (201,),
            json={"base_url": BILLING_PLATFORM, "api_key": account.json()["api_key"]},
        )
        self.connected = connected.status_code == 201

    def card(self) -> dict[str, str]:
        return DECLINING_CARD if random.random() < DECLINE_SHARE else GOOD_CARD

    def tour(self) -> None:
        """Every step of the mix once, in an order where each finds what it needs: a short
        run (the smoke test) then covers every request type whatever the dice say."""
        self.create_invoice()
        self.list_invoices()
        self.read_invoice()
        self.send_invoice()
        self.pay_invoice()
        self.create_paid_invoice()
        self.top_up_wallet()
        self.refresh()
        self.look_around()
        self.sync_now()

    # --- the mix ---------------------------------------------------------------------------

    @task(20)
    def list_invoices(self) -> None:
        query: dict[str, Any] = random.choice(
            [
                {},
                {"status": "pending"},
                {"status": "paid", "order_by": "client_name"},
                {"client_name": "Client 1", "order_dir": "asc"},
                {"due_date": datetime.now(UTC).date().isoformat(), "order_by": "status"},
            ]
        )
        self.call("GET", "/api/invoices", "/api/invoices?filters", (200,), params=query)

    @task(12)
    def create_invoice(self) -> None:
        if not self.clients:
            self.add_client()
            return
        lines = [
            {"description": "Work", "quantity": str(random.randint(1, 5)), "unit_price": "40.00"},
            {"description": "Hosting", "quantity": "1", "unit_price": "9.99"},
        ]
        body: dict[str, Any] = {
            "client_id": random.choice(self.clients),
            "description": "Monthly work",
            "lines": lines,
        }
        # Some due today, so that the billing run has invoices to charge.
        if random.random() < 0.3:
            body["due_date"] = datetime.now(UTC).date().isoformat()
        answer = self.call("POST", "/api/invoices", "/api/invoices", (201,), json=body)
        if answer.status_code == 201:
            self.invoices.append(answer.json()["id"])

    @task(10)
    def read_invoice(self) -> None:
        if self.invoices:
            invoice = random.choice(self.invoices)
            self.call("GET", f"/api/invoices/{invoice}", "/api/invoices/{id}", (200,))

    @task(6)
    def pay_invoice(self) -> None:
        """Seed 001's payment by card; an invoice paid (or being paid) already is 409."""
        if self.invoices:
            invoice = self.invoices.pop(random.randrange(len(self.invoices)))
            self.call(
                "POST",
                f"/invoice/pay/{invoice}",
                "/invoice/pay/{id}",
                (201, 402, 409),
                json=self.card(),
            )
            self.invoices.append(invoice)

    @task(3)
    def create_paid_invoice(self) -> None:
        """Seed 001's invoice created and paid by card in one request."""
        if self.clients:
            self.call(
                "POST",
                "/invoice",
                "/invoice",
                (201, 402),
                json={
                    "jobDescription": "Software License Fee",
                    "amount": 99.99,
                    "customerId": random.choice(self.clients),
                    "card": self.card(),
                },
            )

    @task(3)
    def top_up_wallet(self) -> None:
        self.top_up(self.card())

    @task(4)
    def send_invoice(self) -> None:
        """Email an invoice (0.50 from the wallet; 402 when it is short, 409 when void)."""
        if self.invoices:
            invoice = random.choice(self.invoices)
            body: dict[str, Any] = {"message": "Thank you!"}
            if BOUNCING and random.random() < BOUNCE_SHARE:
                body["to"] = random.choice(BOUNCING)
            self.call(
                "POST",
                f"/api/invoices/{invoice}/send",
                "/api/invoices/{id}/send",
                (202, 402, 409),
                json=body,
            )

    @task(3)
    def refresh(self) -> None:
        """A 401 is expected after a refresh whose answer was lost (a 503 from the gateway
        while the user service had already rotated the token): presenting the old token
        again later revokes the sign-in, and the owner signs in again."""
        if not self.refresh_token:
            self.sign_in()
            return
        with self.client.post(
            "/api/auth/refresh",
            name="/api/auth/refresh",
            json={"refresh_token": self.refresh_token},
            catch_response=True,
        ) as answer:
            judge(answer, (200, 401))
        if answer.status_code == 200:
            tokens = answer.json()
            self.access_token = tokens["access_token"]
            self.refresh_token = tokens["refresh_token"]
        elif answer.status_code == 401:
            self.sign_in()

    @task(1)
    def sign_in_again(self) -> None:
        self.sign_in()

    @task(2)
    def add_another_client(self) -> None:
        self.add_client()

    @task(3)
    def look_around(self) -> None:
        """The profile, the wallet and the emails sent."""
        self.call("GET", "/api/users/me", "/api/users/me", (200,))
        self.call("GET", "/api/wallet", "/api/wallet", (200,))
        self.call("GET", "/api/emails", "/api/emails", (200,))

    @task(1)
    def sync_now(self) -> None:
        """At most once a minute per owner: more often is the service's own 429."""
        if self.connected:
            self.call("POST", "/api/sync/runs", "/api/sync/runs", (202, 429))
        elif BILLING_PLATFORM:
            self.connect_billing_platform()


def retry_after(answer: requests.Response) -> float:
    try:
        return max(0.0, float(answer.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def judge(answer: ResponseContextManager, expected: tuple[int, ...]) -> None:
    status = answer.status_code
    if status in (429, 503) and answer.headers.get("Retry-After"):
        # A limit, or a dependency down, said properly: the client waits and tries again.
        # (The run counts these by status; without faults a 503 still fails it.)
        answer.success()
    elif status in expected:
        answer.success()
    elif status == 0:
        # No answer at all: what the client met instead (refused, reset, closed...).
        error = getattr(answer, "error", None)
        answer.failure(f"no answer: {type(error).__name__}: {str(error)[:200]}")
    else:
        answer.failure(f"{status}: {answer.text[:200]}")
