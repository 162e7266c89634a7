"""Access-token verification: the one valid shape passes, every forgery is refused alike."""

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from common.auth import JwksCache, KeysUnavailable, TokenVerifier
from common.errors import Unauthorized
from common.testing.fault_proxy import FaultProxy
from common.testing.identity import AUDIENCE, ISSUER, TestIssuer


@pytest.fixture
async def verifier(test_issuer: TestIssuer) -> AsyncIterator[TokenVerifier]:
    async with httpx.AsyncClient() as http:
        yield TokenVerifier(JwksCache(test_issuer.jwks_url, http), ISSUER, AUDIENCE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, object], kid: str) -> str:
    header = {"alg": "none", "kid": kid}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _hmac_signed(claims: dict[str, object], kid: str, secret: bytes) -> str:
    """The classic confusion attack: the RSA public key used as an HMAC secret."""
    header = {"alg": "HS256", "kid": kid, "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


async def test_a_valid_token_names_its_user(
    verifier: TokenVerifier, test_issuer: TestIssuer
) -> None:
    user_id = uuid.uuid4()

    user = await verifier.verify(test_issuer.token(user_id))

    assert user.id == user_id
    assert user.claims["iss"] == ISSUER


def _forgeries(issuer: TestIssuer) -> dict[str, str]:
    user_id = uuid.uuid4()
    claims = issuer.claims(user_id)
    public_pem = issuer.key.as_pem(private=False)
    stranger = RSAKey.generate_key(2048, parameters={"kid": issuer.key.kid})
    unknown_kid = RSAKey.generate_key(2048, parameters={"kid": "not-published"})
    valid = issuer.token(user_id)
    header, _, signature = valid.split(".")
    tampered_claims = {**claims, "sub": str(uuid.uuid4())}
    return {
        "alg none": _unsigned(claims, issuer.key.kid),
        "HS256 keyed with the public key": _hmac_signed(claims, issuer.key.kid, public_pem),
        "signed by another key with the same kid": jwt.encode(
            {"alg": "RS256", "kid": issuer.key.kid}, claims, stranger
        ),
        "unknown kid": jwt.encode({"alg": "RS256", "kid": "not-published"}, claims, unknown_kid),
        "payload swapped after signing": ".".join(
            [header, _b64(json.dumps(tampered_claims).encode()), signature]
        ),
        "wrong issuer": issuer.token(user_id, iss="https://evil.example"),
        "wrong audience": issuer.token(user_id, aud="another-api"),
        "expired": issuer.token(user_id, exp=int(time.time()) - 60),
        "no expiry": jwt.encode(
            {"alg": "RS256", "kid": issuer.key.kid},
            {k: v for k, v in claims.items() if k != "exp"},
            issuer.key,
        ),
        "subject is not a user id": issuer.token(user_id, sub="admin"),
        "not a token": "hello",
        "empty": "",
    }


FORGERY_NAMES = [
    "alg none",
    "HS256 keyed with the public key",
    "signed by another key with the same kid",
    "unknown kid",
    "payload swapped after signing",
    "wrong issuer",
    "wrong audience",
    "expired",
    "no expiry",
    "subject is not a user id",
    "not a token",
    "empty",
]


@pytest.mark.parametrize("name", FORGERY_NAMES)
async def test_forged_tokens_are_refused(
    verifier: TokenVerifier, test_issuer: TestIssuer, name: str
) -> None:
    forgeries = _forgeries(test_issuer)
    assert sorted(forgeries) == sorted(FORGERY_NAMES)
    token = forgeries[name]

    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_a_rotated_key_is_fetched_when_a_token_names_it() -> None:
    old, new = TestIssuer().start(), None
    try:
        async with httpx.AsyncClient() as http:
            cache = JwksCache(old.jwks_url, http, refresh_floor_seconds=0.1)
            verifier = TokenVerifier(cache, ISSUER, AUDIENCE)
            await verifier.verify(old.token())
            await asyncio.sleep(0.15)  # past the floor
            # The issuer rotates: it now publishes a second key and signs with it.
            new = TestIssuer()
            old.public_jwks = {"keys": [*old.public_jwks["keys"], *new.public_jwks["keys"]]}

            user = await verifier.verify(new.token(uuid.UUID(int=7)))

        assert user.id == uuid.UUID(int=7)
    finally:
        old.stop()


# --- remembered tokens --------------------------------------------------------------------------


async def test_a_remembered_token_is_refused_once_it_expires(
    verifier: TokenVerifier, test_issuer: TestIssuer
) -> None:
    expires_at = int(time.time()) + 2
    token = test_issuer.token(uuid.uuid4(), exp=expires_at)
    await verifier.verify(token)
    await verifier.verify(token)  # from memory now

    await asyncio.sleep(expires_at - time.time() + 0.05)

    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_a_remembered_token_is_refused_once_its_key_is_withdrawn() -> None:
    issuer = TestIssuer().start()
    try:
        async with httpx.AsyncClient() as http:
            cache = JwksCache(issuer.jwks_url, http, max_age_seconds=0.2, refresh_floor_seconds=0.2)
            verifier = TokenVerifier(cache, ISSUER, AUDIENCE)
            token = issuer.token()
            await verifier.verify(token)
            await verifier.verify(token)

            # The key leaked: the issuer stops publishing it.
            issuer.public_jwks = TestIssuer().public_jwks
            await asyncio.sleep(0.3)
            # Past max_age the cached keys still answer while one fetch replaces them: a
            # withdrawn key is honoured for at most max_age and one fetch.
            await verifier.verify(token)
            assert cache._background is not None
            await cache._background

            with pytest.raises(Unauthorized):
                await verifier.verify(token)
    finally:
        issuer.stop()


async def test_an_idle_cache_never_honours_a_withdrawn_key_again() -> None:
    issuer = TestIssuer().start()
    try:
        async with httpx.AsyncClient() as http:
            cache = JwksCache(
                issuer.jwks_url,
                http,
                max_age_seconds=0.2,
                refresh_floor_seconds=0.2,
                stale_for_seconds=0.2,
            )
            verifier = TokenVerifier(cache, ISSUER, AUDIENCE)
            token = issuer.token()
            await verifier.verify(token)

            issuer.public_jwks = TestIssuer().public_jwks
            # No request for longer than max_age + stale_for: the keys are too old to serve
            # while a fetch runs, so the first request after the pause waits for it.
            await asyncio.sleep(0.5)

            with pytest.raises(Unauthorized):
                await verifier.verify(token)
    finally:
        issuer.stop()


def test_a_withdrawn_key_is_refused_within_seconds_by_default() -> None:
    cache = JwksCache("http://127.0.0.1:9/jwks", httpx.AsyncClient())
    # docs/security.md promises 20 s (plus one fetch of at most 5 s) to every service.
    assert cache.max_age_seconds + cache.stale_for_seconds <= 20


async def test_remembered_tokens_are_bounded_and_a_forgotten_one_is_verified_again(
    test_issuer: TestIssuer,
) -> None:
    async with httpx.AsyncClient() as http:
        verifier = TokenVerifier(
            JwksCache(test_issuer.jwks_url, http), ISSUER, AUDIENCE, remembered=2
        )
        users = [uuid.uuid4() for _ in range(5)]
        tokens = [test_issuer.token(user_id) for user_id in users]

        for _ in range(2):
            for user_id, token in zip(users, tokens, strict=True):
                assert (await verifier.verify(token)).id == user_id

        assert len(verifier._verified) == 2


# --- fetching the key set -----------------------------------------------------------------------


class CountingIssuer(TestIssuer):
    """A TestIssuer whose JWKS endpoint counts its fetches and can be made slow or failing."""

    __test__ = False

    def __init__(self) -> None:
        self.fetches = 0
        self.delay_seconds = 0.0
        self.failing = False
        self._count_lock = threading.Lock()
        super().__init__()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self
        serving = super()._handler()

        class CountingHandler(serving):  # type: ignore[valid-type,misc]
            def do_GET(self) -> None:
                with issuer._count_lock:
                    issuer.fetches += 1
                time.sleep(issuer.delay_seconds)
                if issuer.failing:
                    self.send_error(503)
                    return
                super().do_GET()

        return CountingHandler


@pytest.fixture
def counting_issuer() -> Iterator[CountingIssuer]:
    issuer = CountingIssuer().start()
    try:
        yield issuer
    finally:
        issuer.stop()


def _token_with_kid(kid: str) -> str:
    """A token naming a key id nobody publishes; refused before its signature is looked at."""
    header = _b64(json.dumps({"alg": "RS256", "kid": kid}).encode())
    claims = _b64(json.dumps({"sub": str(uuid.uuid4())}).encode())
    return f"{header}.{claims}.{_b64(b'not a signature')}"


async def test_a_burst_of_unknown_kids_costs_one_fetch(counting_issuer: CountingIssuer) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1000)) as http:
        verifier = TokenVerifier(
            JwksCache(counting_issuer.jwks_url, http, refresh_floor_seconds=5), ISSUER, AUDIENCE
        )
        tokens = [_token_with_kid(uuid.uuid4().hex) for _ in range(500)]

        results = await asyncio.gather(
            *(verifier.verify(token) for token in tokens), return_exceptions=True
        )

    assert all(isinstance(result, Unauthorized) for result in results)
    assert counting_issuer.fetches == 1


async def test_keys_past_max_age_answer_at_once_while_one_fetch_runs(
    counting_issuer: CountingIssuer,
) -> None:
    async with httpx.AsyncClient() as http:
        cache = JwksCache(
            counting_issuer.jwks_url, http, max_age_seconds=0.2, refresh_floor_seconds=0.2
        )
        verifier = TokenVerifier(cache, ISSUER, AUDIENCE)
        tokens = [counting_issuer.token() for _ in range(20)]
        await verifier.verify(tokens[0])
        await asyncio.sleep(0.3)
        counting_issuer.delay_seconds = 2

        started = time.monotonic()
        users = await asyncio.gather(*(verifier.verify(token) for token in tokens))
        answered_in = time.monotonic() - started

        assert len(users) == 20
        assert answered_in < 1, "nobody waited for the slow fetch"
        assert cache._background is not None
        await cache._background
    assert counting_issuer.fetches == 2


async def test_a_failed_fetch_keeps_the_keys_and_nobody_waits_for_it(
    counting_issuer: CountingIssuer,
) -> None:
    async with httpx.AsyncClient() as http:
        cache = JwksCache(
            counting_issuer.jwks_url, http, max_age_seconds=0.2, refresh_floor_seconds=0.2
        )
        verifier = TokenVerifier(cache, ISSUER, AUDIENCE)
        user_id = uuid.uuid4()
        await verifier.verify(counting_issuer.token(user_id))
        await asyncio.sleep(0.3)
        # The user service is down: its answer is slow and an error.
        counting_issuer.delay_seconds, counting_issuer.failing = 1, True

        started = time.monotonic()
        during = await verifier.verify(counting_issuer.token(user_id))
        assert time.monotonic() - started < 0.8
        assert cache._background is not None
        await cache._background
        after = await verifier.verify(counting_issuer.token(user_id))

    assert during.id == after.id == user_id
    assert counting_issuer.fetches == 2


def test_a_refresh_floor_of_zero_is_refused() -> None:
    http = httpx.AsyncClient()
    with pytest.raises(ValueError, match="floor"):
        JwksCache("http://issuer.test/jwks", http, refresh_floor_seconds=0)


async def test_a_good_token_is_unavailable_not_refused_while_the_keys_cannot_be_read(
    test_issuer: TestIssuer,
) -> None:
    """A process started while the user service is down has no keys yet: a good token must
    get 503 (try again), not 401 (sign in again); once the keys can be read it passes."""
    issuer_port = int(test_issuer.jwks_url.split(":")[2].split("/")[0])
    path = "/" + test_issuer.jwks_url.split("/", 3)[3]
    async with (
        FaultProxy("127.0.0.1", issuer_port) as user_service,
        httpx.AsyncClient() as http,
    ):
        cache = JwksCache(
            f"http://127.0.0.1:{user_service.port}{path}", http, refresh_floor_seconds=0.1
        )
        verifier = TokenVerifier(cache, ISSUER, AUDIENCE)
        token = test_issuer.token(uuid.uuid4())
        await user_service.down()

        with pytest.raises(KeysUnavailable) as unavailable:
            await verifier.verify(token)
        assert unavailable.value.status == 503
        assert unavailable.value.headers["Retry-After"]

        await user_service.up()
        await asyncio.sleep(0.2)  # past the refresh floor
        assert (await verifier.verify(token)).id


async def test_a_token_naming_a_key_the_issuer_does_not_publish_is_still_refused(
    verifier: TokenVerifier, test_issuer: TestIssuer
) -> None:
    stranger = TestIssuer()
    with pytest.raises(Unauthorized):
        await verifier.verify(stranger.token(uuid.uuid4()))
