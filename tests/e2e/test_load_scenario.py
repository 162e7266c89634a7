"""The load scenario (tests/load/locustfile.py), briefly, against the end-to-end suite: 20
owners for 20 seconds through the gateway. Every request type of the scenario runs, none is
answered 5xx, every 429 carries Retry-After and nothing else unexpected comes back. The full
run with its figures is `make load` (scripts/load.py, docs/benchmarks.md "Load")."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from simulators.billing_platform_testing import BillingPlatformServer

from .conftest import Suite

LOCUSTFILE = Path(__file__).resolve().parents[1] / "load" / "locustfile.py"
BOUNCING = ["bounce-smoke-1@example.com", "bounce-smoke-2@example.com"]


def run_locust(suite: Suite, platform: str, report: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LOAD_PROVIDER": suite.provider,
        "LOAD_BILLING_PLATFORM": platform,
        "LOAD_BOUNCING": ",".join(BOUNCING),
        "LOAD_REPORT": str(report),
        # Every owner takes every step once first: 20 s then covers every request type.
        "LOAD_TOUR": "1",
    }
    command = [
        sys.executable,
        *("-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"),
        *("--users", "20", "--spawn-rate", "10", "--run-time", "20s", "--stop-timeout", "60"),
        *("--host", suite.gateway, "--loglevel", "WARNING"),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


async def test_every_request_of_the_scenario_runs_without_a_server_error(
    suite: Suite, tmp_path: Path
) -> None:
    for recipient in BOUNCING:
        suite.mail.fault(provider="sendgrid", mode="bounce", recipient=recipient)
    report_path = tmp_path / "report.json"
    with BillingPlatformServer() as platform:
        run = await asyncio.to_thread(run_locust, suite, platform.base_url, report_path)
    assert report_path.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(report_path.read_text())

    endpoints = report["endpoints"]
    ran = {name for name, endpoint in endpoints.items() if endpoint["requests"]}
    never_ran = [name for name in report["operations"] if name not in ran]
    server_errors = {
        f"{name} {status}": count
        for name, endpoint in endpoints.items()
        for status, count in endpoint["statuses"].items()
        if int(status) >= 500 or int(status) == 0
    }
    assert not never_ran
    assert not server_errors
    assert not report["missing_retry_after"]
    assert report["total"]["failures"] == 0, report["errors"]
