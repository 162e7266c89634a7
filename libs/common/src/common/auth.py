"""Access-token verification against the user service's JWKS.

Every service checks tokens itself: signature by a key from the JWKS, RS256 only, issuer,
audience, expiry and a subject that is a user id. The key set is cached and fetched again
when a token names a key id the cache does not hold (the signing keys rotate).
"""

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from common.errors import ServiceUnavailable, Unauthorized
from common.logging import get_logger

ALLOWED_ALGORITHMS = ("RS256",)
log = get_logger(__name__)


@dataclass(frozen=True)
class AuthenticatedUser:
    """The owner a request acts for, from a verified access token."""

    id: uuid.UUID
    claims: Mapping[str, Any]


@dataclass(frozen=True)
class _VerifiedToken:
    user: AuthenticatedUser
    kid: str
    expires_at: float


class KeysUnavailable(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("The keys to check the access token could not be read; try again")


class JwksCache:
    """The signing keys, refreshed on an unknown key id but no more often than the floor.

    Fetches run one at a time and each re-checks, once it holds the lock, whether another
    fetch has just finished (single flight): a burst of tokens naming unknown key ids costs at
    most one fetch per floor interval, whatever their number. Keys older than `max_age` are
    still served while one background fetch replaces them (stale while revalidate), so no
    request waits on the user service, and a failed fetch keeps the keys already held.

    A key the issuer withdraws (a leak) must stop working everywhere within seconds, so
    `max_age` is short, and keys are served stale for at most `stale_for` more: a process
    that was idle longer waits for one fetch before it answers. A withdrawn key, and every
    token remembered as signed by it, is therefore refused within `max_age + stale_for` plus
    one fetch (20 s and at most 5 s by default).
    """

    def __init__(
        self,
        jwks_url: str,
        http: httpx.AsyncClient,
        max_age_seconds: float = 10,
        refresh_floor_seconds: float = 5,
        stale_for_seconds: float = 10,
    ) -> None:
        if refresh_floor_seconds <= 0:
            # Without a floor every forged kid is a fetch: the issuer can be flooded through us.
            raise ValueError("refresh_floor_seconds must be positive")
        if max_age_seconds < refresh_floor_seconds:
            raise ValueError("max_age_seconds must be at least refresh_floor_seconds")
        self.jwks_url = jwks_url
        self.http = http
        self.max_age_seconds = max_age_seconds
        self.refresh_floor_seconds = refresh_floor_seconds
        self.stale_for_seconds = stale_for_seconds
        self._keys = KeySet([])
        self._fetched_at = float("-inf")
        self._last_fetch_failed = False
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    async def key_for(self, kid: str) -> Any:
        """The public key with this id, or None when the issuer does not publish it."""
        never_fetched = self._fetched_at == float("-inf")
        if not never_fetched and self._age() > self.max_age_seconds + self.stale_for_seconds:
            # Too old to answer from: a key withdrawn since must not be honoured again.
            await self._refresh(older_than=self.max_age_seconds)
        elif not never_fetched and self._age() > self.max_age_seconds:
            self._refresh_in_background()
        key = self._find(kid)
        if key is None and self._age() > self.refresh_floor_seconds:
            await self._refresh(older_than=self.refresh_floor_seconds)
            key = self._find(kid)
        if key is None and self._last_fetch_failed:
            # Not "no such key" but "the keys could not be read" (a process started while the
            # user service is down): the token may well be good, so not a 401, which tells a
            # client to sign in again.
            raise KeysUnavailable()
        return key

    def _age(self) -> float:
        return time.monotonic() - self._fetched_at

    def _find(self, kid: str) -> Any:
        for key in self._keys.keys:
            if key.kid == kid:
                return key
        return None

    def _refresh_in_background(self) -> None:
        if self._background is None or self._background.done():
            self._background = asyncio.create_task(self._refresh(older_than=self.max_age_seconds))

    async def _refresh(self, *, older_than: float) -> None:
        async with self._lock:
            if self._age() <= older_than:
                # Another request fetched while this one waited for the lock.
                return
            try:
                response = await self.http.get(self.jwks_url, timeout=5)
                response.raise_for_status()
                self._keys = KeySet.import_key_set(response.json())
                self._last_fetch_failed = False
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                # Keep the keys we had: a short outage of the user service logs nobody out.
                log.warning("jwks_fetch_failed", error_type=type(exc).__name__)
                self._last_fetch_failed = True
            # Also after a failure: the floor bounds the fetches an outage attracts.
            self._fetched_at = time.monotonic()


class TokenVerifier:
    """Turns a bearer token into an AuthenticatedUser or raises Unauthorized.

    A client sends the same access token with every request until it expires, and checking
    its RS256 signature is most of what a cheap request costs. So a token that passed is
    remembered (by its SHA-256, never in clear) until its `exp`, as long as the key that
    signed it is still published; at most `remembered` tokens, the oldest forgotten first.
    Refused tokens are never remembered.
    """

    def __init__(
        self, keys: JwksCache, issuer: str, audience: str, *, remembered: int = 10_000
    ) -> None:
        self.keys = keys
        self.remembered = remembered
        self._verified: dict[bytes, _VerifiedToken] = {}
        self.claims_registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def verify(self, token: str) -> AuthenticatedUser:
        """The token's user; the reason for a refusal is logged, never returned."""
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if known is not None:
            if time.time() < known.expires_at and await self.keys.key_for(known.kid) is not None:
                return known.user
            self._verified.pop(digest, None)
        verified = await self._verify_fully(token)
        if len(self._verified) >= self.remembered:
            self._verified.pop(next(iter(self._verified)), None)
        self._verified[digest] = verified
        return verified.user

    async def _verify_fully(self, token: str) -> _VerifiedToken:
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError):
            raise Unauthorized() from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS or not isinstance(kid, str):
            log.info("token_refused", reason="algorithm_or_kid", alg=str(alg))
            raise Unauthorized()
        key = await self.keys.key_for(kid)
        if key is None:
            log.info("token_refused", reason="unknown_kid")
            raise Unauthorized()
        try:
            decoded = jwt.decode(token, key, algorithms=list(ALLOWED_ALGORITHMS))
            self.claims_registry.validate(decoded.claims)
            user_id = uuid.UUID(str(decoded.claims["sub"]))
            expires_at = float(decoded.claims["exp"])
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            log.info("token_refused", reason=type(exc).__name__)
            raise Unauthorized() from None
        claims = MappingProxyType(dict(decoded.claims))
        return _VerifiedToken(AuthenticatedUser(user_id, claims), kid, expires_at)


ClosedAccountsLoader = Callable[[datetime], Awaitable[set[uuid.UUID]]]


class ClosedAccounts:
    """Accounts deleted recently enough that tokens they were given may still be unexpired.

    A deleted account's tokens stop working everywhere, not only in the user service: each
    service learns of deletions from `user.deleted` and asks this gate on every request. Only
    deletions younger than the longest token lifetime matter (older tokens have expired), so
    the set stays small and is reloaded at most every `refresh_seconds`, never per request.
    """

    def __init__(
        self,
        load_closed_since: ClosedAccountsLoader,
        token_lifetime: timedelta = timedelta(hours=1),
        refresh_seconds: float = 2,
    ) -> None:
        self.load_closed_since = load_closed_since
        self.token_lifetime = token_lifetime
        self.refresh_seconds = refresh_seconds
        self._closed: set[uuid.UUID] = set()
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def is_closed(self, user_id: uuid.UUID) -> bool:
        if time.monotonic() - self._loaded_at > self.refresh_seconds:
            async with self._lock:
                if time.monotonic() - self._loaded_at > self.refresh_seconds:
                    since = datetime.now(UTC).replace(tzinfo=None) - self.token_lifetime
                    self._closed = await self.load_closed_since(since)
                    self._loaded_at = time.monotonic()
        return user_id in self._closed


# Declares the bearer scheme in the OpenAPI document on every operation that takes
# CurrentUser; the refusal itself is ours (problem+json), hence auto_error=False.
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="A platform access token from the user service's sign-in",
    auto_error=False,
)


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> AuthenticatedUser:
    """The dependency behind CurrentUser: the app's verifier checks the bearer token."""
    if credentials is None or not credentials.credentials.strip():
        raise Unauthorized()
    verifier: TokenVerifier = request.app.state.token_verifier
    user = await verifier.verify(credentials.credentials.strip())
    closed: ClosedAccounts | None = getattr(request.app.state, "closed_accounts", None)
    if closed is not None and await closed.is_closed(user.id):
        log.info("token_refused", reason="account_deleted")
        raise Unauthorized()
    request.state.user_id = user.id
    return user


CurrentUser = Annotated[AuthenticatedUser, Depends(current_user)]
