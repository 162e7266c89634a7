"""A stand-in issuer of access tokens for tests: a real RSA key pair, its JWKS served over
HTTP, and tokens that services verify through the same code path production uses."""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

ISSUER = "ledgerline-test"
AUDIENCE = "ledgerline"


class TestIssuer:
    """Signs tokens with a key published at `jwks_url`; can also forge bad ones."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, key: RSAKey | None = None, port: int = 0, issuer: str = ISSUER) -> None:
        self.key = key or RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex})
        self.issuer = issuer
        self.public_jwks = KeySet([self.key]).as_dict(private=False)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class JwksHandler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(issuer.public_jwks).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return JwksHandler

    def start(self) -> "TestIssuer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    @property
    def jwks_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/.well-known/jwks.json"

    def claims(self, user_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "iat": now,
            "exp": now + 900,
        }
        claims.update(overrides)
        return claims

    def token(self, user_id: uuid.UUID | None = None, **overrides: Any) -> str:
        """A valid access token for the user (a new random user when none is given)."""
        claims = self.claims(user_id or uuid.uuid4(), **overrides)
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)

    def headers(self, user_id: uuid.UUID, **overrides: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, **overrides)}"}
