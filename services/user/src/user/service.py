"""Domain operations of the user service. They stage changes and events; the edge commits."""

import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import InvalidInput
from common.events import new_event
from common.ids import uuid7
from common.logging import get_logger
from common.outbox import add_event, utcnow
from user import repository
from user.config import UserSettings
from user.crypto import SealError, SecretBox, new_secret, sha256_hex
from user.events import (
    SOURCE,
    TOPIC,
    USER_DELETED,
    USER_REGISTERED,
    USER_UPDATED,
    AddressData,
    UserDeleted,
    UserProfile,
)
from user.exceptions import (
    AccountDeleted,
    LoginStateInvalid,
    RedirectNotAllowed,
    RefreshTokenInvalid,
    RefreshTokenReused,
    SignInRejected,
)
from user.models import (
    Identity,
    LoginState,
    OutboxMessage,
    RefreshToken,
    SigningKey,
    User,
)
from user.oidc import OidcProvider, VerifiedIdentity

log = get_logger(__name__)

SIGNING_ALGORITHM = "RS256"
RSA_KEY_BITS = 2048
ADDRESS_FIELDS = ("line1", "line2", "city", "region", "postal_code", "country")


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str
    user_id: uuid.UUID


@dataclass(frozen=True)
class LoginStarted:
    authorization_url: str
    state: str


@dataclass(frozen=True)
class SignedIn:
    tokens: IssuedTokens
    # Where the browser goes back to; None when the client asked for the tokens as JSON.
    redirect_uri: str | None
    registered: bool


def callback_url(settings: UserSettings, provider: str) -> str:
    """The redirect URI registered with the provider: where it sends the browser back."""
    return f"{settings.public_base_url.rstrip('/')}/api/auth/{provider}/callback"


def _publish(session: AsyncSession, event_type: str, user_id: uuid.UUID, data: BaseModel) -> None:
    add_event(session, OutboxMessage, TOPIC, new_event(SOURCE, event_type, user_id, data))


# --- sign-in ----------------------------------------------------------------------------------


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters a browser reads differently from urlsplit (a backslash is a slash to it) or that
# have no business in a redirect: refused outright rather than interpreted.
_UNSAFE_IN_REDIRECT = frozenset('\\"<>`{}|^ ') | {chr(c) for c in range(0x21)} | {chr(0x7F)}


def check_redirect_allowed(settings: UserSettings, redirect_uri: str) -> None:
    """Refuse to send a browser (and its new session) anywhere but the configured places.

    An entry of `redirect_origins` allows its scheme, host and port exactly, and paths under
    its path. An entry without a port means the scheme's default port, except on a loopback
    host, where a native app listens on whatever port it got (RFC 8252 section 7.3).
    User-info (`user:pass@`) and fragments are refused everywhere.
    """
    if any(char in _UNSAFE_IN_REDIRECT for char in redirect_uri) or not redirect_uri.isascii():
        raise RedirectNotAllowed()
    try:
        target = urlsplit(redirect_uri)
        target_port = target.port or DEFAULT_PORTS.get(target.scheme)
    except ValueError:
        raise RedirectNotAllowed() from None
    if (
        target.scheme not in DEFAULT_PORTS
        or not target.hostname
        or "@" in target.netloc
        or "#" in redirect_uri
        or _has_dot_segment(target.path)
    ):
        raise RedirectNotAllowed()
    for entry in settings.redirect_origins:
        allowed = urlsplit(entry)
        if allowed.scheme != target.scheme or allowed.hostname != target.hostname:
            continue
        if allowed.port is not None:
            port_allowed = allowed.port == target_port
        elif allowed.hostname in LOOPBACK_HOSTS:
            port_allowed = True
        else:
            port_allowed = target_port == DEFAULT_PORTS[target.scheme]
        if port_allowed and _under(target.path, allowed.path):
            return
    raise RedirectNotAllowed()


def _has_dot_segment(path: str) -> bool:
    # A browser resolves "." and ".." (also percent-encoded) before it requests the path, so
    # "/app/../elsewhere" would leave the allowed prefix.
    return any(unquote(segment) in (".", "..") for segment in path.split("/"))


def _under(path: str, prefix: str) -> bool:
    """Whether `path` is `prefix` or below it, counted in whole segments."""
    prefix = prefix.rstrip("/")
    if not prefix:
        return True
    return path == prefix or path.startswith(prefix + "/")


async def start_login(
    session: AsyncSession,
    settings: UserSettings,
    box: SecretBox,
    provider: OidcProvider,
    redirect_uri: str | None,
) -> LoginStarted:
    """Remember a new sign-in (state, PKCE verifier, nonce) and build the provider's URL."""
    if redirect_uri is not None:
        check_redirect_allowed(settings, redirect_uri)
    state, code_verifier, nonce = new_secret(), new_secret(48), new_secret()
    state_hash = sha256_hex(state)
    now = utcnow()
    session.add(
        LoginState(
            state_hash=state_hash,
            provider=provider.name,
            code_verifier_encrypted=box.seal(code_verifier.encode(), state_hash.encode()),
            nonce_hash=sha256_hex(nonce),
            redirect_uri=redirect_uri,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.login_state_seconds),
        )
    )
    url = await provider.authorization_url(
        redirect_uri=callback_url(settings, provider.name),
        state=state,
        code_verifier=code_verifier,
        nonce=nonce,
    )
    return LoginStarted(url, state)


def _raw(value: str) -> bytes:
    # surrogatepass: a decoded header or query may hold any code point; none may raise here.
    return value.encode("utf-8", "surrogatepass")


async def take_login(
    session: AsyncSession, provider: OidcProvider, state: str | None, browser_state: str | None
) -> LoginState:
    """The sign-in this callback finishes, removed so it cannot be finished twice (the
    caller commits the removal before going on).

    The state must also match the cookie set when this browser started the sign-in, so a
    callback link made for another browser cannot sign this one in.
    """
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (TypeError, a
    # 500), and either value is whatever a client chose to send.
    if not state or not browser_state or not hmac.compare_digest(_raw(state), _raw(browser_state)):
        raise LoginStateInvalid()
    login = await repository.take_login_state(session, sha256_hex(state))
    if login is None or login.provider != provider.name or login.expires_at <= utcnow():
        raise LoginStateInvalid()
    await session.delete(login)
    await session.flush()
    return login


async def finish_login(
    session: AsyncSession,
    settings: UserSettings,
    box: SecretBox,
    provider: OidcProvider,
    login: LoginState,
    *,
    code: str | None,
    provider_error: str | None,
) -> SignedIn:
    """Exchange the code, validate the id_token, find or create the user, issue tokens."""
    if provider_error is not None:
        log.info("sign_in_denied_by_provider", provider=provider.name, error=provider_error[:50])
        raise SignInRejected()
    if not code:
        raise InvalidInput("The provider's callback carries no code", field="code")
    try:
        sealed = login.code_verifier_encrypted
        code_verifier = box.open(sealed, login.state_hash.encode()).decode()
    except SealError:
        # Sealed under a secret key that has since changed: this sign-in cannot finish.
        raise LoginStateInvalid() from None
    id_token = await provider.exchange_code(
        code=code, code_verifier=code_verifier, redirect_uri=callback_url(settings, provider.name)
    )
    identity = await provider.verify_id_token(id_token, login.nonce_hash)
    user, registered = await _user_for_identity(session, settings, provider.name, identity)
    tokens = await issue_tokens(session, settings, box, user.id)
    log.info("signed_in", provider=provider.name, user_id=str(user.id), registered=registered)
    return SignedIn(tokens, login.redirect_uri, registered)


async def _user_for_identity(
    session: AsyncSession, settings: UserSettings, provider: str, identity: VerifiedIdentity
) -> tuple[User, bool]:
    """The user this provider account signs in as; the first sign-in creates one.

    Accounts are found by (issuer, subject) only. An email another account already uses does
    not join the two: addresses are not proof of the same person across providers.
    """
    now = utcnow()
    for _ in range(2):
        known = await repository.find_identity(session, identity.issuer, identity.subject)
        if known is not None:
            user = await repository.get_user(session, known.user_id)
            if user is None or user.deleted_at is not None:
                raise AccountDeleted()
            known.last_login_at = now
            known.email = identity.email
            return user, False
        try:
            # A savepoint: a concurrent first sign-in of the same identity wins the unique
            # (issuer, subject) key, and this one then finds its user on the next pass.
            async with session.begin_nested():
                user = User(
                    email=identity.email,
                    name=identity.name,
                    wallet_currency=settings.default_currency,
                )
                session.add(user)
                await session.flush()
                session.add(
                    Identity(
                        user_id=user.id,
                        provider=provider,
                        issuer=identity.issuer,
                        subject=identity.subject,
                        email=identity.email,
                        created_at=now,
                        last_login_at=now,
                    )
                )
                await session.flush()
        except IntegrityError:
            continue
        _publish(session, USER_REGISTERED, user.id, profile_event(user))
        return user, True
    raise AccountDeleted()


# --- platform tokens --------------------------------------------------------------------------


async def issue_tokens(
    session: AsyncSession,
    settings: UserSettings,
    box: SecretBox,
    user_id: uuid.UUID,
    family_id: uuid.UUID | None = None,
    refresh_token: str | None = None,
) -> IssuedTokens:
    """A signed access token and a new refresh token (of a new family unless one is given;
    a random value unless one is given)."""
    refresh_token = refresh_token or new_secret()
    now = utcnow()
    row = RefreshToken(
        id=uuid7(),
        token_hash=sha256_hex(refresh_token),
        family_id=family_id or uuid7(),
        user_id=user_id,
        created_at=now,
        expires_at=now + timedelta(days=settings.refresh_token_days),
    )
    session.add(row)
    await session.flush()
    return await _token_pair(session, settings, box, row, refresh_token, now)


async def _token_pair(
    session: AsyncSession,
    settings: UserSettings,
    box: SecretBox,
    row: RefreshToken,
    refresh_token: str,
    now: datetime,
) -> IssuedTokens:
    """The refresh token of `row` and the access token issued with it.

    The access token's claims come from the row (`iat` its creation, `jti` its id), so
    issuing it again for the same row gives the same claims and, RS256 signatures being
    deterministic, the same token as long as the same key signs.
    """
    kid, key = await signing_key(session, settings, box)
    issued_at = _epoch(row.created_at)
    expires_at = issued_at + settings.access_token_seconds
    claims = {
        "iss": settings.auth_issuer,
        "aud": settings.auth_audience,
        "sub": str(row.user_id),
        "iat": issued_at,
        "exp": expires_at,
        "jti": row.id.hex,
    }
    access_token = jwt.encode(
        {"alg": SIGNING_ALGORITHM, "kid": kid, "typ": "JWT"},
        claims,
        key,
        algorithms=[SIGNING_ALGORITHM],
    )
    # What is left of the token's life; a replay gets the same token and less of it.
    expires_in = min(settings.access_token_seconds, expires_at - _epoch(now))
    return IssuedTokens(access_token, expires_in, refresh_token, row.user_id)


def _epoch(moment: datetime) -> int:
    """Seconds since the epoch of a naive UTC datetime, as JWT claims count time."""
    return int(moment.replace(tzinfo=UTC).timestamp())


async def refresh(
    session: AsyncSession, settings: UserSettings, box: SecretBox, refresh_token: str
) -> IssuedTokens:
    """Spend a refresh token for new tokens of the same family.

    The successor is derived from the token (see `SecretBox.successor_token`), so it is the
    same value every time this token is spent. A token that was already spent means two
    parties hold it, unless it comes back within the reuse interval while its successor is
    still the family's latest token: then it is two tabs or devices refreshing together, and
    they get the same pair. Any other reuse revokes the whole family, which signs out both
    the thief and the user (who signs in again). RefreshTokenReused is raised after the
    revocation is staged; the caller commits it before answering.
    """
    row = await repository.get_refresh_token(session, sha256_hex(refresh_token))
    # Taken once the row lock is held: a request that waited for a concurrent exchange of
    # the same token measures the interval from when it may decide, not from its arrival.
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise RefreshTokenInvalid()
    successor = box.successor_token(refresh_token)
    if row.spent_at is not None:
        replayed = await _replay_within_reuse_interval(session, settings, box, row, successor, now)
        if replayed is not None:
            return replayed
        await repository.revoke_family(session, row.family_id, now)
        log.warning("refresh_token_reused", user_id=str(row.user_id), family=str(row.family_id))
        raise RefreshTokenReused()
    user = await repository.get_user(session, row.user_id)
    if user is None or user.deleted_at is not None:
        raise RefreshTokenInvalid()
    row.spent_at = now
    return await issue_tokens(
        session, settings, box, user.id, family_id=row.family_id, refresh_token=successor
    )


async def _replay_within_reuse_interval(
    session: AsyncSession,
    settings: UserSettings,
    box: SecretBox,
    spent: RefreshToken,
    successor: str,
    now: datetime,
) -> IssuedTokens | None:
    """The pair this spent token was exchanged for, when it may be handed out again: the
    token was spent less than the reuse interval ago and its successor is still unused.

    The interval counts from the first exchange and a replay does not restart it. The
    successor is read under its row lock, so a concurrent exchange of the successor either
    has committed (and this is a reuse) or waits until this answer is given.
    """
    # Times are whole seconds, so "less than" keeps the real wait under the interval, and an
    # interval of 0 replays nothing.
    if spent.spent_at is None or now - spent.spent_at >= timedelta(
        seconds=settings.refresh_reuse_seconds
    ):
        return None
    latest = await repository.get_refresh_token(session, sha256_hex(successor))
    # Revoked covers logout and a deleted account too: both revoke every token they end.
    if (
        latest is None
        or latest.family_id != spent.family_id
        or latest.spent_at is not None
        or latest.revoked_at is not None
        or latest.expires_at <= now
    ):
        return None
    log.info("refresh_token_replayed", user_id=str(latest.user_id), family=str(latest.family_id))
    return await _token_pair(session, settings, box, latest, successor, now)


async def logout(session: AsyncSession, refresh_token: str) -> None:
    """Revoke the sign-in this refresh token belongs to (its whole family)."""
    row = await repository.get_refresh_token(session, sha256_hex(refresh_token))
    if row is not None:
        await repository.revoke_family(session, row.family_id, utcnow())


async def logout_everywhere(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Revoke every sign-in of this user, in every browser and device."""
    await repository.revoke_user_tokens(session, user_id, utcnow())
    log.info("signed_out_everywhere", user_id=str(user_id))


# --- signing keys -----------------------------------------------------------------------------


def _public_jwk(key: RSAKey) -> dict[str, Any]:
    jwk = dict(key.as_dict(private=False))
    jwk.update({"use": "sig", "alg": SIGNING_ALGORITHM})
    return jwk


async def _add_signing_key(session: AsyncSession, box: SecretBox, now: datetime) -> SigningKey:
    kid = uuid7().hex
    key = RSAKey.generate_key(RSA_KEY_BITS, parameters={"kid": kid})
    row = SigningKey(
        kid=kid,
        algorithm=SIGNING_ALGORITHM,
        public_jwk=json.dumps(_public_jwk(key)),
        private_key_encrypted=box.seal(key.as_pem(private=True), kid.encode()),
        created_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def rotate_signing_keys(
    session: AsyncSession,
    settings: UserSettings,
    box: SecretBox,
    *,
    only_if_older_than: timedelta | None = None,
) -> str | None:
    """Move signing to the next key and publish a new next key; the kid that now signs, or
    None when the current key has not yet signed for `only_if_older_than`.

    Keys are ordered by creation: the newest is the *next* key, published but not yet
    signing, so every service's cached JWKS already holds it when it starts to sign; the
    second newest signs; the third is the *previous* key, still published so the tokens it
    signed stay valid. Older keys are deleted once every token they signed has expired.
    """
    await repository.lock_signing_keys(session)
    now = utcnow()
    keys = await repository.newest_signing_keys(session, 2)
    if len(keys) < 2:
        # First start: a key to sign with now, and the next one published ahead of its use.
        for _ in range(2 - len(keys)):
            await _add_signing_key(session, box, now)
        keys = await repository.newest_signing_keys(session, 2)
        log.info("signing_keys_created", signing=keys[1].kid, next=keys[0].kid)
        return keys[1].kid
    # The next key's creation is when the current key began to sign.
    if only_if_older_than is not None and keys[0].created_at > now - only_if_older_than:
        return None
    added = await _add_signing_key(session, box, now)
    await _drop_retired_keys(session, settings, now)
    log.info("signing_key_rotated", signing=keys[0].kid, next=added.kid)
    return keys[0].kid


class SigningKeyNotFound(Exception):
    """No signing key has this kid (never made, or already gone)."""


async def withdraw_signing_key(
    session: AsyncSession, settings: UserSettings, box: SecretBox, kid: str
) -> str:
    """Stop publishing a key at once (it leaked); the kid that signs afterwards.

    The key is deleted, so it leaves the JWKS with this commit, and every service refuses the
    tokens it signed, remembered ones included, within its JwksCache's bound (docs/security.md).
    When it was the current or the next key, two fresh keys take their places, so nothing
    signs with the withdrawn key or with an older one; the new signing key is not published
    ahead of its use, but a service meeting its kid fetches the JWKS again (a few seconds).
    """
    await repository.lock_signing_keys(session)
    newest = [key.kid for key in await repository.newest_signing_keys(session, 2)]
    if not await repository.delete_signing_key(session, kid):
        raise SigningKeyNotFound(kid)
    if kid in newest:
        now = utcnow()
        await _add_signing_key(session, box, now)
        await _add_signing_key(session, box, now)
    keys = await repository.newest_signing_keys(session, 2)
    if len(keys) < 2:
        await rotate_signing_keys(session, settings, box)
        keys = await repository.newest_signing_keys(session, 2)
    log.warning("signing_key_withdrawn", kid=kid, signing=keys[1].kid)
    return keys[1].kid


async def _drop_retired_keys(session: AsyncSession, settings: UserSettings, now: datetime) -> None:
    """Keep the next, current and previous keys, and any older one a live token may name."""
    keys = await repository.newest_signing_keys(session, 1000)
    # Newest first: keys[i] stopped signing when keys[i - 2] was created.
    grace = timedelta(seconds=settings.access_token_seconds + 60)
    for index in range(3, len(keys)):
        if keys[index - 2].created_at < now - grace:
            await repository.delete_signing_keys_below(session, keys[index].id + 1)
            return


# Signing keys as imported, by kid. Importing an RSA private key checks it, which costs tens
# of milliseconds of CPU on a quiet machine and hundreds on a busy one, and it was done for
# every token issued, in the event loop: under load every sign-in and refresh queued behind
# it. A key's row never changes, so each process imports each key once; only the next and
# current keys are kept (a withdrawn or retired key leaves memory at the next signing).
_imported_keys: dict[str, RSAKey] = {}


def _private_key(row: SigningKey, box: SecretBox) -> RSAKey:
    key = _imported_keys.get(row.kid)
    if key is None:
        pem = box.open(row.private_key_encrypted, row.kid.encode())
        key = RSAKey.import_key(pem, parameters={"kid": row.kid})
        _imported_keys[row.kid] = key
    return key


async def signing_key(
    session: AsyncSession, settings: UserSettings, box: SecretBox
) -> tuple[str, RSAKey]:
    """The key that signs now (the keys are created on first use), decrypted."""
    keys = await repository.newest_signing_keys(session, 2)
    if len(keys) < 2:
        await rotate_signing_keys(session, settings, box)
        keys = await repository.newest_signing_keys(session, 2)
    for kid in set(_imported_keys) - {key.kid for key in keys}:
        del _imported_keys[kid]
    row = keys[1]
    return row.kid, _private_key(row, box)


async def published_keys(session: AsyncSession) -> dict[str, list[dict[str, Any]]]:
    """The JWKS: public parts of the next, current and previous keys (and any older key a
    live token may still name)."""
    keys = await repository.newest_signing_keys(session, 1000)
    return {"keys": [json.loads(key.public_jwk) for key in keys]}


# --- housekeeping -----------------------------------------------------------------------------


async def clean_up(session: AsyncSession) -> int:
    """Delete expired sign-ins in progress and expired refresh tokens; the rows removed."""
    now = utcnow()
    return await repository.delete_expired_login_states(
        session, now
    ) + await repository.delete_expired_refresh_tokens(session, now)


# --- wallet -----------------------------------------------------------------------------------


async def record_wallet_balance(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    currency: str,
    balance: Decimal,
    sequence: int,
) -> None:
    """Show the balance after one of the payment service's wallet ledger entries, if that
    entry is newer than the one shown.

    The event states the balance after the entry, so it is taken as it is rather than adding
    the amount: a repeated entry cannot count twice, and the sequence (one counter per owner
    and currency) says which statement is the latest. The profile shows the wallet in its
    own currency only.
    """
    user = await repository.get_user(session, owner_id, for_update=True)
    if user is None or user.deleted_at is not None:
        # Not an error of the event: no account here to show it on (or no longer one).
        log.info("wallet_event_without_account", user_id=str(owner_id), sequence=sequence)
        return
    if currency != user.wallet_currency:
        log.info("wallet_event_in_other_currency", user_id=str(owner_id), currency=currency)
        return
    if sequence <= user.wallet_sequence:
        log.info(
            "wallet_event_not_newer",
            user_id=str(owner_id),
            sequence=sequence,
            applied=user.wallet_sequence,
        )
        return
    user.wallet_balance = balance
    user.wallet_sequence = sequence


# --- profile ----------------------------------------------------------------------------------


def address_of(user: User) -> dict[str, str | None] | None:
    """The address as one object, or None when no part of it is set."""
    parts = {name: getattr(user, f"address_{name}") for name in ADDRESS_FIELDS}
    return parts if any(value is not None for value in parts.values()) else None


def profile_event(user: User) -> UserProfile:
    address = address_of(user)
    return UserProfile(
        user_id=user.id,
        email=user.email,
        name=user.name,
        company_name=user.company_name,
        address=AddressData(**address) if address is not None else None,
    )


async def get_account(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> User:
    """The signed-in user's account; a deleted one no longer signs anything in."""
    user = await repository.get_user(session, user_id, for_update=for_update)
    if user is None or user.deleted_at is not None:
        raise AccountDeleted()
    return user


async def update_profile(
    session: AsyncSession, user_id: uuid.UUID, changes: dict[str, Any]
) -> User:
    """Apply the fields present in `changes` and announce the new profile if it changed."""
    user = await get_account(session, user_id, for_update=True)
    values: dict[str, Any] = {
        name: changes[name] for name in ("name", "email", "company_name") if name in changes
    }
    if "address" in changes:
        address = changes["address"] or {}
        values.update({f"address_{name}": address.get(name) for name in ADDRESS_FIELDS})
    changed = False
    for column, value in values.items():
        if getattr(user, column) != value:
            setattr(user, column, value)
            changed = True
    if changed:
        user.updated_at = utcnow()
        await session.flush()
        _publish(session, USER_UPDATED, user.id, profile_event(user))
    return user


async def delete_account(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Erase the person: profile emptied, provider links removed, every sign-in revoked.

    The row stays as a tombstone so the id is known as deleted: its tokens are refused and
    late events about it change nothing.
    """
    user = await get_account(session, user_id, for_update=True)
    now = utcnow()
    user.email = user.name = user.company_name = None
    for name in ADDRESS_FIELDS:
        setattr(user, f"address_{name}", None)
    user.deleted_at = user.updated_at = now
    await repository.delete_identities(session, user.id)
    await repository.revoke_user_tokens(session, user.id, now)
    await session.flush()
    _publish(session, USER_DELETED, user.id, UserDeleted(user_id=user.id))
    log.info("account_deleted", user_id=str(user.id))
