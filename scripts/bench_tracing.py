"""What tracing costs the hot path: `GET /api/invoices` with tracing off, on, and exported.

Three invoice APIs (uvicorn, the service's own app factory, one worker each) serve the same
throwaway schema, in which one owner's invoices are created through the API first: one with
`OTEL_SDK_DISABLED=true`, one with tracing on and no exporter (spans made and their ids
logged, nothing sent), one exporting over OTLP/HTTP to a sink in this process that answers
every batch at once. `wrk` loads the first page of that owner's listing on each in turn,
round after round (the order turning each round), so a slow spell of a shared machine
touches all three alike. Printed per API: requests per second, the median round's p50 and
p99, the API process's CPU per request, and each as a ratio to tracing off.

Run with the project's virtual environment:
`.venv/bin/python scripts/bench_tracing.py [--rounds 5] [--seconds 2] [--write-docs]`.
"""

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from common.testing.bench import Table, machine, process_cpu_seconds, write_section
from common.testing.identity import TestIssuer
from common.testing.plugin import migrate_schema, temporary_database
from common.testing.servers import MysqlServer, free_port

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
ALEMBIC_INI = ROOT / "services" / "invoice" / "alembic.ini"
MYSQL = MysqlServer("127.0.0.1", 3306, "root", "")
CURSOR_SECRET = "bench-cursor-secret"  # noqa: S105 - signs the bench's own cursors only
LISTING = "/api/invoices?limit=50"
LIVENESS = "/health/live"


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that reads each batch and answers 200 with an empty message."""

    batches = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        _Sink.batches += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Mode:
    name: str
    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    requests: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.requests


def start_api(database_url: str, issuer: TestIssuer, mode: Mode, log: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env |= {
        "INVOICE_DATABASE_URL": database_url,
        "INVOICE_CURSOR_SECRET": CURSOR_SECRET,
        "AUTH_JWKS_URL": issuer.jwks_url,
        "AUTH_ISSUER": issuer.issuer,
        "LOG_LEVEL": "WARNING",
        **mode.env,
    }
    mode.port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "invoice.main:create_app",
        "--host", "127.0.0.1", "--port", str(mode.port), "--workers", "1",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as output:
        mode.process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, token: str, seconds: int, concurrency: int) -> tuple[int, float, float, float]:
    """requests, seconds, p50 ms, p99 ms of one round."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "--timeout", "5s",
         "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    if done is None or p50 is None or p99 is None or "Non-2xx" in out:
        raise RuntimeError(f"wrk: {out}")
    seconds_taken = _ms(done.group(2), done.group(3)) / 1000
    return int(done.group(1)), seconds_taken, _ms(*p50.groups()), _ms(*p99.groups())


async def wait_until_live(mode: Mode, log: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            assert mode.process is not None
            if mode.process.poll() is not None:
                break
            try:
                url = f"http://127.0.0.1:{mode.port}{LIVENESS}"
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the {mode.name} API did not come up; its output is in {log}")


async def create_invoices(base_url: str, token: str, count: int) -> None:
    """One owner's client and `count` invoices, through the API like any owner's."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as api:
        client = await api.post(
            "/api/clients", json={"name": "Globex", "email": "billing@globex.example"}
        )
        client.raise_for_status()
        for number in range(count):
            invoice = await api.post(
                "/api/invoices",
                json={
                    "client_id": client.json()["id"],
                    "description": f"Consulting, week {number}",
                    "amount": f"{100 + number}.00",
                    "due_date": "2031-06-30",
                },
            )
            invoice.raise_for_status()


async def run(args: argparse.Namespace) -> Table:
    async with temporary_database(MYSQL, "tracing_bench") as database_url:
        migrate_schema(ALEMBIC_INI, "INVOICE", database_url)
        return await measure(args, database_url)


async def measure(args: argparse.Namespace, database_url: str) -> Table:
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    modes = [
        Mode("off", {"OTEL_SDK_DISABLED": "true"}),
        Mode("on, not exported", {}),
        Mode(
            "on, exported", {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_port}"}
        ),
    ]
    issuer = TestIssuer().start()
    logs = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    token = issuer.token(uuid.uuid4(), exp=int(time.time()) + 3600)
    try:
        for number, mode in enumerate(modes):
            start_api(database_url, issuer, mode, logs / f"api-{number}.log")
        for number, mode in enumerate(modes):
            await wait_until_live(mode, logs / f"api-{number}.log")
        await create_invoices(f"http://127.0.0.1:{modes[0].port}", token, args.invoices)
        for mode in modes:
            wrk(f"http://127.0.0.1:{mode.port}{LISTING}", token, 1, args.concurrency)  # warm-up
        for round_number in range(args.rounds):
            turn = round_number % len(modes)
            for mode in modes[turn:] + modes[:turn]:
                assert mode.process is not None
                cpu_before = process_cpu_seconds(mode.process.pid)
                requests, seconds, p50, p99 = wrk(
                    f"http://127.0.0.1:{mode.port}{LISTING}", token, args.seconds, args.concurrency
                )
                mode.cpu += process_cpu_seconds(mode.process.pid) - cpu_before
                mode.requests += requests
                mode.seconds += seconds
                mode.p50_ms.append(p50)
                mode.p99_ms.append(p99)
            print(f"round {round_number + 1} of {args.rounds} done", flush=True)
    finally:
        for mode in modes:
            if mode.process is not None:
                mode.process.terminate()
                mode.process.wait(10)
        issuer.stop()
        sink.shutdown()
    shutil.rmtree(logs, ignore_errors=True)  # kept when the run failed, to read
    off = modes[0]
    table = Table(
        ["tracing", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "req/s vs off", "CPU vs off"]
    )
    for mode in modes:
        table.add(
            mode.name,
            mode.rps,
            statistics.median(mode.p50_ms),
            statistics.median(mode.p99_ms),
            mode.cpu_ms,
            mode.rps / off.rps,
            mode.cpu_ms / off.cpu_ms,
        )
    print(f"the sink received {_Sink.batches} batches of spans")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=200, help="the owner's invoices")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=2, help="length of one round of load")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: make wrk")
    where = machine()  # its load average is the one at the start
    table = asyncio.run(run(args))
    print()
    print(table.text())
    if args.write_docs:
        command = (
            f"scripts/bench_tracing.py --invoices {args.invoices} --rounds {args.rounds} "
            f"--seconds {args.seconds} --concurrency {args.concurrency}"
        )
        body = (
            f"Measured with `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({where}; "
            "the machine is shared with other jobs, so the ratios are the figures to read)."
            "\n\n" + table.markdown()
        )
        write_section(DOCS, "tracing", body)
        print(f"wrote the tracing section of {DOCS}")


if __name__ == "__main__":
    main()
