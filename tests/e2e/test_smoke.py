"""scripts/smoke.py, the check CI runs through the gateway after each deployment to staging:
it passes against the whole suite, and fails, naming what, against a gateway whose services
are not running."""

import subprocess
import sys
from pathlib import Path

from common.testing.gateway import GatewayConfig, start_gateway
from common.testing.servers import free_port

from .conftest import Suite

SMOKE = Path(__file__).resolve().parents[2] / "scripts" / "smoke.py"


def smoke(base_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SMOKE), base_url, "--wait", "10"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_smoke_test_passes_against_the_running_suite(suite: Suite) -> None:
    result = smoke(suite.gateway)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert "smoke test passed" in result.stdout


def test_the_smoke_test_fails_when_the_services_behind_the_gateway_are_down(
    tmp_path: Path,
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    config = GatewayConfig(
        port=free_port(),
        user_upstream=nowhere,
        invoice_upstream=nowhere,
        payment_upstream=nowhere,
        email_upstream=nowhere,
        sync_upstream=nowhere,
    )
    gateway = start_gateway(config, tmp_path / "gateway")
    try:
        result = smoke(f"http://127.0.0.1:{config.port}")
    finally:
        gateway.terminate()
        gateway.wait(10)

    assert result.returncode == 1
    # The gateway itself answers; every check of a service behind it fails.
    assert "ok    the gateway answers" in result.stdout
    assert "FAIL  the signing keys are published" in result.stdout
    assert "FAIL  the invoice service refuses /api/invoices without a token" in result.stdout
    assert "smoke test failed" in result.stderr
