"""The suite's API as one, through the gateway: schemathesis's stateful phase follows the
OpenAPI links between the services (a client, invoices billed to it, reading one, paying it
by card, sending it, then its email at the email service and the payments at the payment
service) and holds every answer to the gateway's document, the union of the services' own
(`documents.gateway_document`). Every check runs; any failure fails the test.
"""

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Suite
from .documents import gateway_document, links, resolves, routed_to

CONFIG = Path(__file__).with_name("schemathesis.toml")
# The stateful phase's budget: about 1,500 sequences on two busy cores.
STATEFUL_SECONDS = 150
# A card FakePay charges (docs/fakepay.md), for the wallet the sends take their fee from.
GOOD_CARD = {"number": "4242 4242 4242 4242", "name": "Fuzz Owner", "expiry": "01-2040"}


async def the_gateway_document(suite: Suite) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        documents = {}
        for service, api in suite.apis.items():
            answer = await client.get(f"{api}/openapi.json")
            answer.raise_for_status()
            documents[service] = answer.json()
    return gateway_document(documents)


def the_failures(output: str) -> str:
    """The run's failing cases (each with its request and the curl that repeats it) before its
    summary: CI shows the start of a failure's message, and the cases are what a reader needs."""
    failures = output.find("FAILURES")
    summary = output.find("SUMMARY")
    if failures == -1 or summary == -1:
        return output[-12000:]
    return output[failures : failures + 10000] + "\n[…]\n" + output[summary:]


# What marks a server error in a log line: a service's JSON line, the gateway's access line.
SERVER_ERROR_MARKS = ('"status": 5', '"status":5', '"level": "error"')


def server_errors(logs: Path) -> str:
    """What the suite's processes logged of their server errors (an answer of 5xx, an error
    with its traceback), for a failure the fuzzer found: the cause is in the service's log."""
    found = []
    for log in sorted(logs.rglob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("ERROR:") or any(mark in line for mark in SERVER_ERROR_MARKS):
                found.append(f"{log.name}: {line}")
    return "\nserver errors in the suite's logs:\n" + "\n".join(found)[-8000:]


async def test_every_link_resolves_at_the_gateway_and_crosses_services(suite: Suite) -> None:
    document = await the_gateway_document(suite)
    dangling = [
        f"{source} {name} -> {described.get('operationRef')}"
        for source, name, described in links(document)
        if not resolves(document, described.get("operationRef", ""))
    ]
    assert not dangling
    crossing = {
        (source, name)
        for source, name, described in links(document)
        if routed_to(source.split(" ", 1)[1])
        != routed_to(
            described["operationRef"]
            .removeprefix("#/paths/")
            .rpartition("/")[0]
            .replace("~1", "/")
            .replace("~0", "~")
        )
    }
    # Create -> read -> pay -> send -> emails, across the invoice, payment and email services.
    assert ("POST /api/invoices/{invoice_id}/send", "GetEmail") in crossing
    assert ("GET /api/invoices/{invoice_id}", "ListInvoiceEmails") in crossing
    assert ("POST /invoice/pay/{invoice_id}", "ListPayments") in crossing


async def test_the_whole_api_answers_as_documented_through_the_gateway(
    suite: Suite, sign_in_as: Any, tmp_path: Path
) -> None:
    owner = await sign_in_as(f"fuzz-gw-{uuid.uuid4().hex[:8]}@example.com")
    # A funded wallet, so that sends are accepted and their emails can be followed.
    topped = await owner.api.post(
        "/api/wallet/topups", json={"amount": "100.00", "currency": "USD", "card": GOOD_CARD}
    )
    assert topped.status_code == 201, topped.text
    document = tmp_path / "gateway.json"
    document.write_text(json.dumps(await the_gateway_document(suite)))
    command = [
        sys.executable,
        *("-m", "schemathesis.cli", "--config-file", str(CONFIG), "run", str(document)),
        *("--url", suite.gateway, "--phases", "stateful", "--checks", "all"),
        # Sequences are drawn again and again until the budget is spent.
        *("--max-time", str(STATEFUL_SECONDS)),
        *("--header", f"Authorization: Bearer {owner.access_token}"),
        # Under the suite gateway's budgets (50 requests/s for the address and for the token):
        # on a quiet machine the fuzzer goes faster, and the gateway's 429 would come before
        # the answer each check is about.
        *("--rate-limit", "40/s"),
    ]
    run = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=900, check=False
    )
    assert run.returncode == 0, (
        the_failures(run.stdout) + run.stderr[-2000:] + server_errors(suite.logs)
    )
    # The sequences crossed services: sends the fuzzer made reached the email service.
    emails = await owner.api.get("/api/emails")
    assert emails.status_code == 200, emails.text
    assert emails.json()["items"], "no send was followed to its email"


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/invoices/{invoice_id}/emails", "email"),
        ("/api/invoices/{invoice_id}/send", "invoice"),
        ("/invoice/pay/{invoice_id}", "invoice"),
        ("/internal/invoice-payments", None),
        ("/api/wallet/topups", "payment"),
        ("/health/live", None),
    ],
)
def test_paths_are_taken_from_the_service_the_gateway_routes_them_to(
    path: str, service: str | None
) -> None:
    assert routed_to(path) == service
