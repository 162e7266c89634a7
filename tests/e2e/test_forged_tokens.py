"""Forged access tokens against every service, through the gateway: each is a 401
problem+json, and nothing is created or charged."""

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from .conftest import Suite

PROTECTED = [
    ("GET", "/api/users/me"),
    ("GET", "/api/invoices"),
    ("POST", "/api/clients"),
    ("POST", "/invoice/pay/0197a0b2-0000-7000-8000-000000000000"),
    ("GET", "/api/payments"),
    ("GET", "/api/wallet"),
    ("POST", "/api/wallet/topups"),
    ("GET", "/api/emails"),
    ("GET", "/api/emails/0197a0b2-0000-7000-8000-000000000000"),
    ("GET", "/api/invoices/0197a0b2-0000-7000-8000-000000000000/emails"),
    ("GET", "/api/sync/connections"),
    ("POST", "/api/sync/connections"),
    ("GET", "/api/sync/status"),
    ("POST", "/api/sync/runs"),
    ("DELETE", "/api/sync/connections/0197a0b2-0000-7000-8000-000000000000"),
]
CARD = {"number": "1234 5656 7822 5678", "expiry": "01-2040", "name": "Work Card"}
# A body each POST would take from a valid token, so only the token is wrong.
BODIES = {
    "/api/clients": {"name": "Forged", "email": "f@example.com"},
    "/api/wallet/topups": {"amount": "10.00", "currency": "USD", "card": CARD},
    "/api/sync/connections": {"base_url": "http://127.0.0.1:9", "api_key": "sk_forged_key"},
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


async def forgeries(suite: Suite, victim: Any) -> dict[str, str]:
    """Tokens an attacker can make, knowing the published keys and a victim's token."""
    async with httpx.AsyncClient() as http:
        jwks = (await http.get(f"{suite.gateway}/.well-known/jwks.json")).json()
    published = KeySet.import_key_set(jwks).keys[0]
    header, payload, signature = victim.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    kid = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    public_pem = published.as_pem(private=False)
    hs256_input = _segments({"alg": "HS256", "kid": kid, "typ": "JWT"}, claims)
    hs256_signature = hmac.new(public_pem, hs256_input.encode(), hashlib.sha256).digest()
    stranger = RSAKey.generate_key(2048, parameters={"kid": kid})
    other_user = {**claims, "sub": str(uuid.uuid4())}
    return {
        "alg none": _segments({"alg": "none", "kid": kid}, claims) + ".",
        "HS256 keyed with the public key": f"{hs256_input}.{_b64(hs256_signature)}",
        "signed by a stranger's key under the real kid": jwt.encode(
            {"alg": "RS256", "kid": kid}, claims, stranger
        ),
        "unknown kid": jwt.encode(
            {"alg": "RS256", "kid": "unknown"},
            claims,
            RSAKey.generate_key(2048, parameters={"kid": "unknown"}),
        ),
        "claims swapped under a real signature": ".".join(
            [header, _b64(json.dumps(other_user).encode()), signature]
        ),
        "expired, self-signed": jwt.encode(
            {"alg": "RS256", "kid": kid}, {**claims, "exp": 1}, stranger
        ),
    }


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_every_service_refuses_forged_tokens(
    suite: Suite, sign_in_as: Any, method: str, path: str
) -> None:
    victim = await sign_in_as(f"victim-{uuid.uuid4().hex[:8]}@example.com")
    forged = await forgeries(suite, victim)

    async with httpx.AsyncClient(base_url=suite.gateway) as attacker:
        for name, token in forged.items():
            response = await attacker.request(
                method,
                path,
                headers={"Authorization": f"Bearer {token}"},
                json=BODIES.get(path, CARD) if method == "POST" else None,
            )
            assert response.status_code == 401, (name, response.text)
            assert response.headers["content-type"] == "application/problem+json", name

    clients = await victim.api.get("/api/clients")
    assert clients.json()["items"] == []
    assert (await victim.api.get("/api/payments")).json()["items"] == []
    assert (await victim.api.get("/api/wallet")).json()["balances"] == []
    assert (await victim.api.get("/api/emails")).json()["items"] == []
    assert (await victim.api.get("/api/sync/connections")).json()["items"] == []


async def test_forged_tokens_neither_download_nor_send_the_victims_invoice(
    suite: Suite, sign_in_as: Any
) -> None:
    """The victim's own invoice, named by its real id: a forged token gets 401 on its PDF and
    on sending it, and the victim's wallet pays no fee."""
    victim = await sign_in_as(f"victim-{uuid.uuid4().hex[:8]}@example.com")
    client = (
        await victim.api.post("/api/clients", json={"name": "Zeta", "email": "ap@zeta.example"})
    ).json()
    invoice = (
        await victim.api.post(
            "/api/invoices",
            json={"client_id": client["id"], "description": "Audit", "amount": "90.00"},
        )
    ).json()
    topup = await victim.api.post(
        "/api/wallet/topups", json={"amount": "5.00", "currency": "USD", "card": CARD}
    )
    assert topup.status_code == 201, topup.text
    forged = await forgeries(suite, victim)

    async with httpx.AsyncClient(base_url=suite.gateway) as attacker:
        for name, token in forged.items():
            headers = {"Authorization": f"Bearer {token}"}
            pdf = await attacker.get(invoice["links"]["pdf"], headers=headers)
            send = await attacker.post(
                invoice["links"]["send"], json={"to": "attacker@example.com"}, headers=headers
            )
            assert (pdf.status_code, send.status_code) == (401, 401), (name, pdf.text, send.text)
            assert send.headers["content-type"] == "application/problem+json", name

    wallet = (await victim.api.get("/api/wallet")).json()
    assert wallet["balances"] == [{"currency": "USD", "balance": "5.00"}]
    # The victim's own token still works.
    assert (await victim.api.get(invoice["links"]["pdf"])).status_code == 200
