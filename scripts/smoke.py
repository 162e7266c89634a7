"""A smoke test of a deployed suite through its gateway, with no account and no state changed.

    python scripts/smoke.py https://ledgerline.example.com [--wait 120]

Run by CI after each deployment to staging (docs/deploy.md), and by hand after a rollback.
It checks that the gateway answers, that each service answers behind it (every service
refuses a request without a token with its own 401 problem, which only a running service
with its database and settings can do), that the signing keys are published without a
private part, and that /internal/ is closed. It signs nobody in: staging signs in through a
real identity provider, whose accounts a pipeline should not hold. Exit status 1 names every
check that failed.
"""

import argparse
import sys
import time
from collections.abc import Callable

import httpx

# One endpoint per service that needs a token: the 401 comes from the service itself.
SIGNED_IN_ONLY = {
    "user": "/api/users/me",
    "invoice": "/api/invoices",
    "payment": "/api/billing-runs",
    "email": "/api/emails",
    "sync": "/api/sync/connections",
}
SECURITY_HEADERS = ("x-request-id", "x-content-type-options", "strict-transport-security")


class Failed(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def gateway_health(client: httpx.Client) -> None:
    response = client.get("/gateway/health")
    expect(response.status_code == 200, f"status {response.status_code}")
    expect(response.json() == {"status": "UP"}, f"body {response.text[:200]}")
    missing = [name for name in SECURITY_HEADERS if name not in response.headers]
    expect(not missing, f"headers missing: {missing}")


def signing_keys(client: httpx.Client) -> None:
    response = client.get("/.well-known/jwks.json")
    expect(response.status_code == 200, f"status {response.status_code}")
    keys = response.json().get("keys", [])
    expect(bool(keys), "no key published")
    for key in keys:
        expect(bool(key.get("kid")), "a key without kid")
        private = sorted({"d", "p", "q", "dp", "dq", "qi"} & key.keys())
        expect(not private, f"key {key.get('kid')} publishes private parts {private}")


def refuses_without_token(path: str) -> Callable[[httpx.Client], None]:
    def check(client: httpx.Client) -> None:
        response = client.get(path)
        expect(response.status_code == 401, f"status {response.status_code}")
        content_type = response.headers.get("content-type", "")
        expect(content_type.startswith("application/problem+json"), f"type {content_type}")
        expect(response.json().get("status") == 401, f"body {response.text[:200]}")

    return check


def internal_closed(client: httpx.Client) -> None:
    response = client.get("/internal/payments")
    expect(response.status_code == 404, f"status {response.status_code}")


def seed_health(client: httpx.Client) -> None:
    response = client.get("/health-check")
    expect(response.status_code == 200, f"status {response.status_code}")


CHECKS: list[tuple[str, Callable[[httpx.Client], None]]] = [
    ("the gateway answers, with its security headers", gateway_health),
    ("the signing keys are published, public parts only", signing_keys),
    ("the invoice service's /health-check", seed_health),
    *(
        (f"the {service} service refuses {path} without a token (401 problem)", check)
        for service, path in SIGNED_IN_ONLY.items()
        for check in [refuses_without_token(path)]
    ),
    ("/internal/ is not reachable from outside", internal_closed),
]


def wait_for_gateway(client: httpx.Client, seconds: float) -> None:
    """A fresh rollout may still be joining its Service: wait for the gateway to answer."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if client.get("/gateway/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return
        time.sleep(2)


def run(base_url: str, wait_seconds: float) -> list[str]:
    """Every check against base_url; the names of those that failed."""
    failed = []
    with httpx.Client(base_url=base_url, timeout=10, follow_redirects=False) as client:
        wait_for_gateway(client, wait_seconds)
        for name, check in CHECKS:
            try:
                check(client)
            except (Failed, httpx.HTTPError, ValueError) as exc:
                print(f"FAIL  {name}: {exc}", flush=True)
                failed.append(name)
            else:
                print(f"ok    {name}", flush=True)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "base_url", help="the gateway's address, e.g. https://ledgerline.example.com"
    )
    parser.add_argument(
        "--wait", type=float, default=120, help="seconds to wait for the gateway to answer first"
    )
    arguments = parser.parse_args()
    failed = run(arguments.base_url.rstrip("/"), arguments.wait)
    if failed:
        sys.exit(f"smoke test failed: {len(failed)} of {len(CHECKS)} checks")
    print(f"smoke test passed: {len(CHECKS)} checks")


if __name__ == "__main__":
    main()
