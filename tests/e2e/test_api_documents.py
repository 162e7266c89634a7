"""Every service answers exactly as its OpenAPI document says, under schema-driven fuzzing.

Schemathesis reads each running service's `/openapi.json` and runs every check it has
(server errors, status codes, content types, response schemas and headers, acceptance of
valid and rejection of invalid input, method and auth handling, stateful sequences that
create, read, list and void), once with a valid access token and once without. The services
are the end-to-end suite's processes on real MySQL and Kafka. A new service is fuzzed by
joining the suite, with no new test code. Settings and exclusions, with their reasons, are
in `schemathesis.toml` beside this file.
"""

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Suite
from .documents import without_foreign_links

CONFIG = Path(__file__).with_name("schemathesis.toml")


def fuzz(api: str, headers: dict[str, str], report: Path) -> subprocess.CompletedProcess[str]:
    # The service's own document, less its links to other services' operations: those are
    # followed through the gateway (test_api_at_the_gateway.py).
    document = report.with_suffix(".json")
    document.write_text(json.dumps(without_foreign_links(httpx.get(f"{api}/openapi.json").json())))
    command = [
        sys.executable,
        *("-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", str(document)),
        *("--url", api, "--checks", "all"),
        *("--report", "junit", "--report-junit-path", str(report)),
    ]
    for name, value in headers.items():
        command += ["--header", f"{name}: {value}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
async def test_every_service_answers_as_documented(
    suite: Suite, sign_in_as: Any, with_token: bool, tmp_path: Path
) -> None:
    headers = {}
    if with_token:
        owner = await sign_in_as(f"fuzz-{uuid.uuid4().hex[:8]}@example.com")
        headers = owner.headers
    failed = {}
    for service, api in suite.apis.items():
        run = fuzz(api, headers, tmp_path / f"{service}.xml")
        if run.returncode != 0:
            failed[service] = run.stdout[-6000:] + run.stderr[-2000:]
    assert not failed, "\n\n".join(f"== {name} ==\n{out}" for name, out in failed.items())
