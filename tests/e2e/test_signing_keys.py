"""A leaked signing key withdrawn with the user service's command: every service stops
accepting the tokens it signed, remembered ones included, within seconds."""

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

from common.testing.suite import SERVICES, Addresses, Suite

# Where each service answers a signed-in user's GET.
READS = {"user": "/api/users/me", "invoice": "/api/invoices", "payment": "/api/payments"}
# docs/security.md: common.auth.JwksCache's max_age + stale_for (20 s) and one fetch (5 s).
BOUND_SECONDS = 25


def user_cli(suite: Suite, databases: dict[str, str], *args: str) -> str:
    """Run `python -m user.cli` with the suite's user service settings; its output."""
    at = Addresses(suite.gateway, suite.provider, suite.fakepay, suite.apis)
    (user,) = [service for service in SERVICES if service.name == "user"]
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "USER_DATABASE_URL": databases["user"],
        **user.settings(at),
    }
    done = subprocess.run(
        [sys.executable, "-m", "user.cli", *args], env=env, capture_output=True, check=True
    )
    return done.stdout.decode()


def kid_of(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid


async def test_a_withdrawn_key_is_refused_by_every_service_within_seconds(
    suite: Suite, databases: dict[str, str], sign_in_as: Any
) -> None:
    erin = await sign_in_as(f"erin-{uuid.uuid4().hex[:8]}@example.com")
    for path in READS.values():
        # Each service now remembers the token as verified.
        assert (await erin.api.get(path)).status_code == 200, path
    kid = kid_of(erin.access_token)
    # The key signs no more (the next one, published long since, takes over), so withdrawing it
    # disturbs no other test; then it leaks.
    await asyncio.to_thread(user_cli, suite, databases, "rotate-keys")
    await asyncio.to_thread(user_cli, suite, databases, "withdraw-key", kid)
    withdrawn_at = time.monotonic()

    answers: dict[str, int] = {}
    while time.monotonic() - withdrawn_at < BOUND_SECONDS + 10:
        answers = {name: (await erin.api.get(path)).status_code for name, path in READS.items()}
        if set(answers.values()) == {401}:
            break
        await asyncio.sleep(0.5)
    took = time.monotonic() - withdrawn_at

    assert answers == dict.fromkeys(READS, 401)
    assert took < BOUND_SECONDS
