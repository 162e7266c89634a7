"""The web app's listing benchmark: from a filter change in the browser to the rows shown,
beside the API's own time for the same request.

Starts the whole suite (`python -m common.testing.suite`, the gateway serving web/dist),
signs one owner in, gives them 20 clients through the API and 10,000 invoices straight into
the invoice schema (a bulk insert: the listing reads rows, however they came), then:

- browser: Playwright drives Debian's Chromium through the gateway (web/e2e/bench/): 29
  changes of the Status or Sort by control, each to a listing state the page has not loaded
  before; measured in the page from the control's change event to the frame after the new
  rows are in the table, and the listing's fetch as the browser's resource timing saw it;
- API: the same 29 queries (25 rows, the page the app asks for) with httpx through the same
  gateway with the same token, each `--api-rounds` times.

The ratio of the browser's p50 to the API's is the figure that travels between machines.
Run: `make bench-web`, or `.venv/bin/python scripts/bench_web.py [--write]` after
`make web-build`; `--write` rewrites the section in docs/benchmarks.md.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from common.testing.bench import Table, machine, percentile, write_section
from invoice.models import Invoice

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
INVOICES = 10_000
CLIENTS = 20
# Seed 000's statuses in the proportions of a small business's year.
STATUS_WEIGHTS = {"pending": 45, "paid": 35, "past_due": 12, "void": 8}
START_TIMEOUT_SECONDS = 600


def start_suite(folder: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """The suite as a process, with the gateway serving the built app; its addresses."""
    addresses = folder / "addresses.json"
    command = [sys.executable, "-m", "common.testing.suite", "--addresses", str(addresses)]
    command += ["--static-root", str(WEB / "dist"), "--logs", str(folder / "logs")]
    with open(folder / "suite.log", "ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not addresses.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the suite did not start: see {folder / 'suite.log'}")
        time.sleep(0.5)
    return process, json.loads(addresses.read_text())


def sign_in(gateway: str, email: str) -> dict[str, Any]:
    """The script's way through the OIDC mock's sign-in (the same user as the browser's)."""
    with httpx.Client(timeout=30) as browser:
        start = browser.get(f"{gateway}/api/auth/mock/login")
        form = browser.post(start.headers["location"], data={"sub": email, "action": "authorize"})
        done = browser.get(form.headers["location"])
        done.raise_for_status()
        tokens: dict[str, Any] = done.json()
        return tokens


async def seed(database_url: str, owner: uuid.UUID, clients: list[dict[str, Any]]) -> None:
    """INVOICES invoices of the owner, spread over the clients, two years of due dates and
    the statuses, in one bulk insert per thousand."""
    rng = random.Random(14)
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            for first in range(0, INVOICES, 1000):
                rows = []
                for n in range(first, min(first + 1000, INVOICES)):
                    client = rng.choice(clients)
                    rows.append(
                        {
                            "id": uuid.uuid4(),
                            "owner_id": owner,
                            "client_id": client["id"],
                            "number": f"INV-{n + 1:06d}",
                            "client_name": client["name"],
                            "description": f"Work package {n + 1}",
                            "amount": Decimal(rng.randint(1000, 500000)) / 100,
                            "currency": "USD",
                            "status": rng.choices(statuses, weights)[0],
                            "due_date": date(2030, 1, 1) + timedelta(days=rng.randrange(730)),
                        }
                    )
                await connection.execute(insert(Invoice), rows)
    finally:
        await engine.dispose()


def browser_samples(addresses_file: Path, email: str, folder: Path) -> list[dict[str, Any]]:
    """The Playwright half (web/e2e/bench/filter.bench.ts): its samples."""
    out = folder / "browser.json"
    env = {
        **os.environ,
        "LEDGERLINE_E2E_ADDRESSES": str(addresses_file),
        "BENCH_EMAIL": email,
        "BENCH_OUT": str(out),
        "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    }
    command = ["npx", "playwright", "test", "--config", "e2e/bench/playwright.config.ts"]
    subprocess.run(command, cwd=WEB, env=env, check=True)
    samples: list[dict[str, Any]] = json.loads(out.read_text())
    return samples


# The gateway allows a client address 50 requests a second (the suite's settings): the
# requests are spaced so that none waits on that budget. One at a time, as the browser sends
# them; the spacing is outside each timing.
API_SPACING_SECONDS = 0.05


def api_samples(gateway: str, token: str, queries: list[str], rounds: int) -> list[float]:
    """Milliseconds of each listing request through the gateway, every query `rounds` times."""
    timings = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=30) as api:
        for query in queries:  # warm the connection and the service's statement cache
            api.get(f"/api/invoices?{query}").raise_for_status()
            time.sleep(API_SPACING_SECONDS)
        for _ in range(rounds):
            for query in queries:
                time.sleep(API_SPACING_SECONDS)
                started = time.perf_counter()
                response = api.get(f"/api/invoices?{query}")
                response.raise_for_status()
                assert len(response.json()["items"]) == 25
                timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="rewrite docs/benchmarks.md")
    arguments = parser.parse_args()
    if not (WEB / "dist" / "index.html").exists():
        raise SystemExit("web/dist is not built: `make web-build` first")

    header = machine()
    with tempfile.TemporaryDirectory(prefix="ledgerline-bench-web-") as folder_name:
        folder = Path(folder_name)
        suite, addresses = start_suite(folder)
        try:
            email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
            tokens = sign_in(addresses["gateway"], email)
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            with httpx.Client(base_url=addresses["gateway"], headers=headers) as api:
                clients = [
                    api.post(
                        "/api/clients",
                        json={"name": f"Client {n:02d} Ltd", "email": f"client{n}@example.com"},
                    ).json()
                    for n in range(CLIENTS)
                ]
            asyncio.run(
                seed(addresses["databases"]["invoice"], uuid.UUID(tokens["user_id"]), clients)
            )
            browser = browser_samples(folder / "addresses.json", email, folder)
            api_ms = api_samples(
                addresses["gateway"],
                tokens["access_token"],
                [sample["query"] for sample in browser],
                arguments.api_rounds,
            )
        finally:
            suite.send_signal(signal.SIGTERM)
            suite.wait(120)

    def column(name: str) -> list[float]:
        return [float(sample[name]) for sample in browser]

    table = Table(["measured", "samples", "p50 ms", "p95 ms", "p50 / API p50"])
    api_p50 = percentile(api_ms, 50)
    for name, values in (
        ("browser: filter change to rows shown", column("shown_ms")),
        ("- change to the request's start", column("before_fetch_ms")),
        ("- the request (resource timing)", column("fetch_ms")),
        ("- response to the frame with the rows", column("after_fetch_ms")),
        ("API through the gateway (httpx)", api_ms),
    ):
        p50 = percentile(values, 50)
        table.add(name, len(values), p50, percentile(values, 95), p50 / api_p50)
    print(header)
    print(table.text())
    if arguments.write:
        body = (
            f"`make bench-web` ({INVOICES:,} invoices of one owner, {CLIENTS} clients; "
            f"{header}):\n\n{table.markdown()}"
        )
        write_section(ROOT / "docs" / "benchmarks.md", "web", body)


if __name__ == "__main__":
    main()
