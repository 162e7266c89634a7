"""id_token validation against a provider's published keys, with hand-made tokens: the one
valid shape passes, every forgery is refused."""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from pydantic import SecretStr

from common.testing.servers import free_port
from user.config import OidcProviderSettings
from user.crypto import sha256_hex
from user.exceptions import IdTokenInvalid, ProviderUnavailable
from user.oidc import OidcProvider, VerifiedIdentity, tls_context

CLIENT_ID = "ledgerline-test"
CLIENT_SECRET = "client-secret-used-as-hmac-key"
NONCE = "n-0S6_WzA2Mj"


class FakeProvider:
    """Discovery and JWKS over HTTP on loopback, and a key to sign id_tokens with."""

    def __init__(self, discovered_issuer: str | None = None) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "provider-key"})
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.documents: dict[str, Any] = {
            "/.well-known/openid-configuration": {
                "issuer": discovered_issuer or self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
            },
            "/jwks": KeySet([self.key]).as_dict(private=False),
        }
        documents = self.documents

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": "248289761001",
            "iat": now,
            "exp": now + 300,
            "nonce": NONCE,
            "email": "jane@example.com",
            "name": "Jane Doe",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def id_token(self, **overrides: Any) -> str:
        return jwt.encode(
            {"alg": "RS256", "kid": "provider-key"}, self.claims(**overrides), self.key
        )

    def client(self) -> OidcProvider:
        return OidcProvider(
            "fake",
            OidcProviderSettings(
                issuer=self.issuer, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET)
            ),
        )


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.server.shutdown()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    header = _b64(json.dumps({"alg": "HS256", "kid": "provider-key"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    return (
        f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
    )


async def test_a_valid_id_token_names_the_identity(provider: FakeProvider) -> None:
    identity = await provider.client().verify_id_token(provider.id_token(), sha256_hex(NONCE))

    assert identity == VerifiedIdentity(
        issuer=provider.issuer, subject="248289761001", email="jane@example.com", name="Jane Doe"
    )


async def test_a_provider_that_names_no_key_and_replaces_it_is_followed() -> None:
    """Some providers (oidc-provider-mock among them) sign id_tokens without a `kid` and make
    a new key when they restart. The drill found sign-ins refused with 401 for good after such
    a restart: the one key held was used for every kid-less token and never fetched again."""
    fake = FakeProvider()
    try:
        client = OidcProvider(
            "fake",
            OidcProviderSettings(
                issuer=fake.issuer, client_id=CLIENT_ID, client_secret=SecretStr(CLIENT_SECRET)
            ),
            jwks_refresh_floor_seconds=0,
        )
        before = jwt.encode({"alg": "RS256"}, fake.claims(), fake.key)
        assert (await client.verify_id_token(before, sha256_hex(NONCE))).subject == "248289761001"

        # The provider restarts with a new key, published under no kid.
        fake.key = RSAKey.generate_key(2048)
        fake.documents["/jwks"] = KeySet([fake.key]).as_dict(private=False)
        after = jwt.encode({"alg": "RS256"}, fake.claims(sub="after-restart"), fake.key)
        assert (await client.verify_id_token(after, sha256_hex(NONCE))).subject == "after-restart"

        # A token signed by neither key is still refused, after one more look at the keys.
        stranger = RSAKey.generate_key(2048)
        forged = jwt.encode({"alg": "RS256"}, fake.claims(), stranger)
        with pytest.raises(IdTokenInvalid):
            await client.verify_id_token(forged, sha256_hex(NONCE))
    finally:
        fake.server.shutdown()


async def test_an_id_token_for_this_client_among_others_needs_azp(provider: FakeProvider) -> None:
    token = provider.id_token(aud=[CLIENT_ID, "another-client"], azp=CLIENT_ID)

    identity = await provider.client().verify_id_token(token, sha256_hex(NONCE))

    assert identity.subject == "248289761001"


def _forgeries(provider: FakeProvider) -> dict[str, str]:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "provider-key"})
    unknown = RSAKey.generate_key(2048, parameters={"kid": "never-published"})
    claims = provider.claims()
    unsigned = (
        _b64(json.dumps({"alg": "none", "kid": "provider-key"}).encode())
        + "."
        + _b64(json.dumps(claims).encode())
        + "."
    )
    return {
        "another nonce": provider.id_token(nonce="replayed-from-another-sign-in"),
        "no nonce": provider.id_token(nonce=None),
        "another audience": provider.id_token(aud="someone-else"),
        "several audiences, azp another": provider.id_token(
            aud=[CLIENT_ID, "someone-else"], azp="someone-else"
        ),
        "another issuer": provider.id_token(iss="https://evil.example"),
        "expired": provider.id_token(iat=int(time.time()) - 3600, exp=int(time.time()) - 600),
        "no expiry": provider.id_token(exp=None),
        "no subject": provider.id_token(sub=None),
        "alg none": unsigned,
        "HS256 keyed with the client secret": _hs256(claims, CLIENT_SECRET.encode()),
        "another key under the provider's kid": jwt.encode(
            {"alg": "RS256", "kid": "provider-key"}, claims, stranger
        ),
        "a key the provider never published": jwt.encode(
            {"alg": "RS256", "kid": "never-published"}, claims, unknown
        ),
        "not a JWT": "not.a.jwt",
    }


FORGERIES = [
    "another nonce",
    "no nonce",
    "another audience",
    "several audiences, azp another",
    "another issuer",
    "expired",
    "no expiry",
    "no subject",
    "alg none",
    "HS256 keyed with the client secret",
    "another key under the provider's kid",
    "a key the provider never published",
    "not a JWT",
]


@pytest.mark.parametrize("name", FORGERIES)
async def test_a_forged_id_token_is_refused(provider: FakeProvider, name: str) -> None:
    forgeries = _forgeries(provider)
    assert sorted(forgeries) == sorted(FORGERIES)

    with pytest.raises(IdTokenInvalid) as refused:
        await provider.client().verify_id_token(forgeries[name], sha256_hex(NONCE))

    assert NONCE not in refused.value.detail


async def test_discovery_naming_another_issuer_is_refused() -> None:
    impostor = FakeProvider(discovered_issuer="https://accounts.example.com")
    try:
        with pytest.raises(ProviderUnavailable):
            await impostor.client().metadata()
    finally:
        impostor.server.shutdown()


async def test_an_unreachable_provider_is_a_502_not_a_crash() -> None:
    nowhere = OidcProvider(
        "nowhere", OidcProviderSettings(issuer=f"http://127.0.0.1:{free_port()}", client_id="x")
    )

    with pytest.raises(ProviderUnavailable) as refused:
        await nowhere.metadata()

    assert refused.value.status == 502


async def test_every_provider_client_shares_one_tls_context() -> None:
    """An httpx client made without a context loads the CA bundle itself, hundreds of ms of
    CPU on a busy machine: two per sign-in held every request of the service back."""
    provider = OidcProvider(
        "shared", OidcProviderSettings(issuer="https://accounts.example.com", client_id="x")
    )
    first = provider._client("https://app.example.com/callback")
    second = provider._client("https://app.example.com/callback")

    contexts = {id(client._transport._pool._ssl_context) for client in (first, second)}
    assert contexts == {id(tls_context())}
    assert tls_context().verify_mode.name == "CERT_REQUIRED", "still verifying certificates"
