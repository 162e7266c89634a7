"""The listing at one and at two replicas of the invoice API, through the gateway.

`make run SCALE=2` puts two processes of every API behind the gateway. This measures what the
second one buys for seed 000's listing (`GET /api/invoices`, the first page of each filter of
the listing benchmark's quick set): two invoice APIs run side by side on a seeded schema, and
two gateways from the deployment template sit in front of them, one balancing over the first
API alone and one over both. Rounds alternate between the two gateways, so both see the same
machine; rates are totals over all rounds, latencies the median round's.

Run with the project's virtual environment (needs wrk and nginx, like `make bench`):
`.venv/bin/python scripts/bench_scale.py [--drop] [--output FILE]`. It seeds a schema of its
own (`invoice_bench_scale`, a fifth of the listing benchmark's size by default, reused while
complete; `--drop` removes it at the end) with scripts/bench_listing.py's generator. See
docs/benchmarks.md for the figures.
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_listing as listing

from common.testing.gateway import GatewayConfig, start_gateway
from common.testing.identity import TestIssuer
from common.testing.servers import free_port


@dataclass
class Rounds:
    """One URL at one replica count: every round's wrk figures."""

    requests: int = 0
    seconds: float = 0.0
    p50: list[float] = field(default_factory=list)
    p95: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


async def wrk(
    base_url: str, url: str, token: str, concurrency: int, seconds: int, lua: Path
) -> tuple[int, float, float, float]:
    process = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-H",
        f"Authorization: Bearer {token}",
        "-s",
        str(lua),
        base_url + url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await process.communicate()
    line = next((x for x in out.decode().splitlines() if x.startswith("LEDGERLINE ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {err.decode()}{out.decode()}")
    requests, micros, p50, p95, errors = (float(v) for v in line.split()[1:])
    if errors:
        raise RuntimeError(f"{errors:.0f} of {requests:.0f} requests failed on {url}")
    return int(requests), micros / 1e6, p50 / 1000, p95 / 1000


def upstreams_in(run_dir: Path) -> list[str]:
    """The API addresses a gateway's access log shows it used."""
    lines = (run_dir / "access.log").read_text().splitlines()
    return sorted({json.loads(line)["upstream"] for line in lines})


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def run(args: argparse.Namespace) -> str:
    began = time.perf_counter()
    load_before = os.getloadavg()
    plan = listing.SeedPlan(args.invoices, args.big_owner_invoices, args.owners)
    seeded = await listing.existing_seed(args.schema, plan)
    if seeded is None:
        listing.say(f"seeding {args.schema}: {plan.invoices:,} invoices ...")
        seeded = await listing.seed(args.schema, plan)
    else:
        listing.migrate(args.schema)
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    lua = workdir / "report.lua"
    lua.write_text(listing.WRK_SCRIPT)
    issuer = TestIssuer().start()
    ports = [free_port(), free_port()]
    apis = [
        listing.start_api(args.schema, issuer, port, workdir / f"api{n}.log")
        for n, port in enumerate(ports, 1)
    ]
    gateways: dict[int, str] = {}
    gateway_processes = []
    results: dict[tuple[str, int], Rounds] = {}
    try:
        for n, (api, port) in enumerate(zip(apis, ports, strict=True), 1):
            await listing.wait_until_live(f"http://127.0.0.1:{port}", api, workdir / f"api{n}.log")
        addresses = [f"127.0.0.1:{port}" for port in ports]
        # Budgets far above the load: the limits are not what is measured.
        unlimited = {
            f"{kind}_{what}": value
            for kind in ("api", "auth", "pay", "user", "public")
            for what, value in (("rate", "100000r/s"), ("burst", 100000))
        }
        for replicas in (1, 2):
            port = free_port()
            config = GatewayConfig(
                port=port,
                user_upstream=addresses[0],
                invoice_upstream=addresses[:replicas],
                **unlimited,  # type: ignore[arg-type]
            )
            gateway_processes.append(start_gateway(config, workdir / f"gateway{replicas}"))
            gateways[replicas] = f"http://127.0.0.1:{port}"
        token = issuer.token(seeded.big_owner, exp=int(time.time()) + 6 * 3600)
        urls = [
            f"/api/invoices?{urlencode(combo.query())}"
            for combo in listing.combos(seeded, quick=True)[: args.urls]
        ]
        for url in urls:  # warm both APIs' caches and connections
            await wrk(gateways[2], url, token, args.concurrency, 1, lua)
        for round_number in range(1, args.rounds + 1):
            listing.say(f"round {round_number}/{args.rounds} ...")
            for url in urls:
                for replicas in (1, 2) if round_number % 2 else (2, 1):
                    requests, seconds, p50, p95 = await wrk(
                        gateways[replicas], url, token, args.concurrency, args.seconds, lua
                    )
                    rounds = results.setdefault((url, replicas), Rounds())
                    rounds.requests += requests
                    rounds.seconds += seconds
                    rounds.p50.append(p50)
                    rounds.p95.append(p95)
        served = {
            replicas: sorted(
                {
                    line.split('"upstream":"')[1].split('"')[0]
                    for line in log.read_text().splitlines()
                }
            )
            for replicas in (1, 2)
            for log in [workdir / f"gateway{replicas}" / "access.log"]
        }
    finally:
        for process in gateway_processes:
            stop(process)
        for api in apis:
            stop(api)
        issuer.stop()
        if args.drop:
            connection = await listing.connect()
            async with connection.cursor() as cursor:
                await cursor.execute(f"DROP DATABASE IF EXISTS `{args.schema}`")
            connection.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return render(args, urls, results, served, load_before, time.perf_counter() - began)


def render(
    args: argparse.Namespace,
    urls: list[str],
    results: dict[tuple[str, int], Rounds],
    served: dict[int, list[str]],
    load_before: tuple[float, float, float],
    elapsed: float,
) -> str:
    load_after = os.getloadavg()
    lines = [
        "| page | 1 replica rps | p50 ms | p95 ms | 2 replicas rps | p50 ms | p95 ms | rps 2/1 |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    ratios = []
    for url in urls:
        one, two = results[(url, 1)], results[(url, 2)]
        ratio = two.rps / one.rps if one.rps else 0.0
        ratios.append(ratio)
        query = url.split("?", 1)[1]
        lines.append(
            f"| `{query}` | {one.rps:,.0f} | {median(one.p50):.1f} | {median(one.p95):.1f} "
            f"| {two.rps:,.0f} | {median(two.p50):.1f} | {median(two.p95):.1f} | {ratio:.2f} |"
        )
    return f"""## The listing at 1 and 2 replicas, through the gateway

Machine: {os.cpu_count()} cores; Python {platform.python_version()}; MariaDB on 127.0.0.1;
load average {load_before[0]:.1f} before and {load_after[0]:.1f} after (other work on the
machine). Schema `{args.schema}`: {args.invoices:,} invoices, the big owner's
{args.big_owner_invoices:,} listed. wrk, {args.concurrency} connections, {args.seconds} s a
round, {args.rounds} rounds per page alternating the two gateways; run time
{elapsed / 60:.1f} min. Upstreams the gateways' access logs show: 1 replica
{", ".join(served[1])}; 2 replicas {", ".join(served[2])}.

{chr(10).join(lines)}

- median rps ratio, 2 replicas / 1: {median(ratios):.2f}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schema", default="invoice_bench_scale", type=listing.schema_name)
    parser.add_argument("--invoices", type=int, default=200_000)
    parser.add_argument("--big-owner-invoices", type=int, default=40_000)
    parser.add_argument("--owners", type=int, default=400)
    parser.add_argument("--urls", type=int, default=4, help="pages of the quick set measured")
    parser.add_argument("--seconds", type=int, default=3, help="length of one round of load")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--drop", action="store_true", help="drop the seeded schema afterwards")
    parser.add_argument("--output", help="also write the markdown report to this file")
    args = parser.parse_args()
    listing.require_wrk()
    report = asyncio.run(run(args))
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n")


if __name__ == "__main__":
    main()
