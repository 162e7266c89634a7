"""Queries of the user service. Repositories read and stage; they never commit."""

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from user.models import Identity, LoginState, RefreshToken, SigningKey, User

# --- users and identities ---------------------------------------------------------------------


async def get_user(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> User | None:
    query = select(User).where(User.id == user_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def find_identity(session: AsyncSession, issuer: str, subject: str) -> Identity | None:
    return await session.scalar(
        select(Identity).where(Identity.issuer == issuer, Identity.subject == subject)
    )


async def delete_identities(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(delete(Identity).where(Identity.user_id == user_id))


# --- login states -----------------------------------------------------------------------------


async def take_login_state(session: AsyncSession, state_hash: str) -> LoginState | None:
    """The sign-in in progress under this state, locked so only one callback can finish it."""
    return await session.scalar(
        select(LoginState).where(LoginState.state_hash == state_hash).with_for_update()
    )


async def delete_expired_login_states(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(LoginState).where(LoginState.expires_at < now))
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- refresh tokens ---------------------------------------------------------------------------


async def get_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    """The token with this hash, locked: two requests with one token must not both rotate."""
    return await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
    )


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_tokens(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def delete_expired_refresh_tokens(session: AsyncSession, before: datetime) -> int:
    """Past its expiry a token is refused anyway, so its row no longer guards against reuse."""
    result = await session.execute(delete(RefreshToken).where(RefreshToken.expires_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- signing keys -----------------------------------------------------------------------------


async def lock_signing_keys(session: AsyncSession) -> None:
    """Serialize rotations: a second rotation waits here until the first has committed."""
    await session.execute(select(SigningKey.id).with_for_update())


async def newest_signing_keys(session: AsyncSession, count: int) -> Sequence[SigningKey]:
    """The newest keys first: the one that signs, then the previous one."""
    return (
        await session.scalars(select(SigningKey).order_by(SigningKey.id.desc()).limit(count))
    ).all()


async def delete_signing_keys_below(session: AsyncSession, key_id: int) -> None:
    await session.execute(delete(SigningKey).where(SigningKey.id < key_id))


async def delete_signing_key(session: AsyncSession, kid: str) -> bool:
    """Delete one key by its kid; whether there was one."""
    result = await session.execute(delete(SigningKey).where(SigningKey.kid == kid))
    return bool(result.rowcount)  # type: ignore[attr-defined]
