"""Talking to OpenID Connect providers: discovery, the authorization URL with PKCE, the code
exchange, and validation of the id_token the provider returns.

authlib's httpx client builds the authorization request (S256 code challenge) and performs
the token request with client authentication; joserfc validates the id_token against the
provider's published keys.
"""

import functools
import hmac
import ssl
import time
import warnings
from dataclasses import dataclass
from typing import Any

import certifi
import httpx
from authlib.deprecate import AuthlibDeprecationWarning
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from common.logging import get_logger
from user.config import OidcProviderSettings
from user.crypto import sha256_hex
from user.exceptions import IdTokenInvalid, ProviderUnavailable, SignInRejected, UnknownProvider

with warnings.catch_warnings():
    # authlib prefers the httpx2 fork and warns when it runs on httpx, which the whole suite
    # uses; the client below works the same on both.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

log = get_logger(__name__)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificate authorities every provider client verifies against, loaded once.

    An httpx client made without one loads certifi's bundle itself: about 300 ms of CPU on a
    busy machine, in the event loop, and sign-in made two clients per user (the login's
    authorization URL, the callback's token request), so under load every request of the
    service waited behind them."""
    return ssl.create_default_context(cafile=certifi.where())


# Asymmetric algorithms only: a provider's id_token is checked against its published keys,
# never against our client secret.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
# Clock difference tolerated between the provider and us.
LEEWAY_SECONDS = 60


@dataclass(frozen=True)
class ProviderMetadata:
    """What discovery tells about a provider, kept to the fields the sign-in uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True)
class VerifiedIdentity:
    """Who the provider says signed in, from a validated id_token."""

    issuer: str
    subject: str
    email: str | None
    name: str | None


class OidcProvider:
    """One configured provider; discovery and its keys are cached in memory."""

    def __init__(
        self,
        name: str,
        settings: OidcProviderSettings,
        *,
        timeout_seconds: float = 10,
        metadata_max_age_seconds: float = 3600,
        jwks_refresh_floor_seconds: float = 10,
    ) -> None:
        self.name = name
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        self.metadata_max_age_seconds = metadata_max_age_seconds
        self.jwks_refresh_floor_seconds = jwks_refresh_floor_seconds
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = float("-inf")
        self._keys = KeySet([])
        self._keys_at = float("-inf")

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            client = httpx.AsyncClient(timeout=self.timeout_seconds, verify=tls_context())
            async with client as http:
                response = await http.get(url)
                response.raise_for_status()
                body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning(
                "oidc_provider_unreachable", provider=self.name, error_type=type(exc).__name__
            )
            raise ProviderUnavailable() from None
        if not isinstance(body, dict):
            raise ProviderUnavailable()
        return body

    async def metadata(self) -> ProviderMetadata:
        """The provider's discovery document, fetched at most once an hour."""
        if self._metadata is not None and (
            time.monotonic() - self._metadata_at < self.metadata_max_age_seconds
        ):
            return self._metadata
        document = await self._get_json(self.settings.discovery_url)
        try:
            metadata = ProviderMetadata(
                issuer=str(document["issuer"]),
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                jwks_uri=str(document["jwks_uri"]),
            )
        except KeyError:
            log.warning("oidc_discovery_incomplete", provider=self.name)
            raise ProviderUnavailable() from None
        if metadata.issuer.rstrip("/") != self.settings.issuer.rstrip("/"):
            # OpenID Connect Discovery: the document must name the issuer it was fetched from.
            log.warning("oidc_discovery_issuer_mismatch", provider=self.name)
            raise ProviderUnavailable()
        self._metadata, self._metadata_at = metadata, time.monotonic()
        return metadata

    def _client(self, redirect_uri: str) -> Any:
        secret = self.settings.client_secret.get_secret_value()
        return AsyncOAuth2Client(
            client_id=self.settings.client_id,
            client_secret=secret or None,
            # A client without a secret is a public client: PKCE alone protects the code.
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            scope=self.settings.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self.timeout_seconds,
            verify=tls_context(),
        )

    async def authorization_url(
        self, *, redirect_uri: str, state: str, code_verifier: str, nonce: str
    ) -> str:
        """Where to send the browser: the provider's login, with state, nonce and S256 PKCE."""
        metadata = await self.metadata()
        async with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata.authorization_endpoint,
                state=state,
                code_verifier=code_verifier,
                nonce=nonce,
            )
        return str(url)

    async def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> str:
        """Trade the authorization code for tokens; only the id_token is kept."""
        metadata = await self.metadata()
        try:
            async with self._client(redirect_uri) as client:
                token = await client.fetch_token(
                    metadata.token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except OAuthError as exc:
            # The error code is the provider's vocabulary (invalid_grant, ...); its
            # description is not logged, a provider may echo the code in it.
            log.info("oidc_code_refused", provider=self.name, error=str(exc.error))
            raise SignInRejected("The identity provider refused the authorization code") from None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning(
                "oidc_token_request_failed", provider=self.name, error_type=type(exc).__name__
            )
            raise ProviderUnavailable() from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise IdTokenInvalid("the provider returned no id_token")
        return id_token

    async def _key_for(self, kid: str | None, stale: bool = False) -> Any:
        """The provider's key for `kid`, its keys fetched again when none is known (or the one
        held is `stale`), at most once per refresh floor."""
        metadata = await self.metadata()
        key = None if stale else self._find_key(kid)
        if key is None and time.monotonic() - self._keys_at > self.jwks_refresh_floor_seconds:
            # A key we have not seen: the provider may have rotated, so fetch its keys again.
            document = await self._get_json(metadata.jwks_uri)
            try:
                self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                log.warning("oidc_jwks_unreadable", provider=self.name)
                raise ProviderUnavailable() from None
            self._keys_at = time.monotonic()
            key = self._find_key(kid)
        return key

    def _find_key(self, kid: str | None) -> Any:
        keys = self._keys.keys
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((key for key in keys if key.kid == kid), None)

    async def verify_id_token(self, id_token: str, nonce_hash: str) -> VerifiedIdentity:
        """Check signature, issuer, audience, expiry and nonce; the identity it names."""
        metadata = await self.metadata()
        try:
            header = jws.extract_compact(id_token.encode()).protected
        except (JoseError, ValueError):
            raise IdTokenInvalid("it is not a signed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ID_TOKEN_ALGORITHMS:
            raise IdTokenInvalid("its signing algorithm is not accepted")
        kid = kid if isinstance(kid, str) else None
        key = await self._key_for(kid)
        if key is None:
            raise IdTokenInvalid("it is signed by a key the provider does not publish")
        try:
            claims = jwt.decode(id_token, key, algorithms=[str(alg)]).claims
        except (JoseError, ValueError):
            # A token naming no key was checked against the one key held, and a provider that
            # names none replaces it unannounced (a new key at every restart, with some): read
            # its keys again, once per refresh floor, before calling the token forged.
            fresh = await self._key_for(None, stale=True) if kid is None else None
            if fresh is None or fresh is key:
                raise IdTokenInvalid("its signature does not verify") from None
            try:
                claims = jwt.decode(id_token, fresh, algorithms=[str(alg)]).claims
            except (JoseError, ValueError):
                raise IdTokenInvalid("its signature does not verify") from None
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": metadata.issuer},
            aud={"essential": True, "value": self.settings.client_id},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            nonce={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise IdTokenInvalid(_claim_problem(exc)) from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.settings.client_id:
            # OpenID Connect Core 3.1.3.7: with several audiences, azp must name this client.
            raise IdTokenInvalid("it was issued to another party")
        if not hmac.compare_digest(sha256_hex(str(claims["nonce"])), nonce_hash):
            raise IdTokenInvalid("its nonce is not the one this sign-in sent")
        email, name = claims.get("email"), claims.get("name")
        return VerifiedIdentity(
            issuer=metadata.issuer,
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) and email else None,
            name=name if isinstance(name, str) and name else None,
        )


def _claim_problem(exc: JoseError) -> str:
    """A reason fit for the client: which claim failed, never its value."""
    claim = getattr(exc, "claim", None) or str(exc.error)
    return f"claim {claim} is missing or invalid"


class ProviderRegistry:
    """The providers named by configuration, by name."""

    def __init__(self, providers: dict[str, OidcProviderSettings]) -> None:
        self._providers = {name: OidcProvider(name, s) for name, s in providers.items()}

    def names(self) -> list[str]:
        return sorted(self._providers)

    def get(self, name: str) -> OidcProvider:
        provider = self._providers.get(name)
        if provider is None:
            raise UnknownProvider()
        return provider
