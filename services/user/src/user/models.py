"""Tables of the user_svc schema."""

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.db import BinaryUUID, service_metadata
from common.ids import uuid7
from common.inbox import InboxMessageMixin
from common.outbox import OutboxMessageMixin, utcnow


class Base(DeclarativeBase):
    """The user_svc schema's registry."""

    metadata = service_metadata()


class User(Base):
    """An account and its profile: what an invoice header needs, and the wallet balance.

    A deleted account keeps its row with every personal field emptied, so its id stays
    known as deleted (tokens refused, late events ignored) and is never reused.
    """

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True, default=uuid7)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    company_name: Mapped[str | None] = mapped_column(String(200))
    address_line1: Mapped[str | None] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    address_city: Mapped[str | None] = mapped_column(String(100))
    address_region: Mapped[str | None] = mapped_column(String(100))
    address_postal_code: Mapped[str | None] = mapped_column(String(20))
    address_country: Mapped[str | None] = mapped_column(String(2))
    # Filled by the payment service's wallet events; never written through the API.
    wallet_balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0.00"))
    wallet_currency: Mapped[str] = mapped_column(String(3))
    # The `sequence` of the ledger entry the balance is from (0: none yet); an event that is
    # not newer than it changes nothing, so a replayed old event never moves the balance back.
    wallet_sequence: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)


class Identity(Base):
    """A provider's account (issuer, subject) that signs in as one of our users."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    provider: Mapped[str] = mapped_column(String(50))
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LoginState(Base):
    """One sign-in in progress, between the redirect to the provider and its callback.

    Keyed by the SHA-256 of `state`; the PKCE verifier is encrypted and the nonce is kept
    only as a hash, so a copy of this table cannot finish anyone's sign-in.
    """

    __tablename__ = "login_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(50))
    code_verifier_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    nonce_hash: Mapped[str] = mapped_column(String(64))
    # Where the browser goes back to; NULL means the client asked for the tokens as JSON.
    redirect_uri: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class RefreshToken(Base):
    """A refresh token, known only by its hash. Each use spends it and issues the next one of
    the same family (derived from it, so the same one again within the reuse interval);
    presenting a spent one otherwise revokes the whole family. The access token issued with
    it carries its id as `jti` and its creation as `iat`."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index(None, "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, primary_key=True, default=uuid7)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column(BinaryUUID, index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    spent_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class SigningKey(Base):
    """An RSA key that signs access tokens. The newest signs; the one before it stays
    published so tokens it signed remain valid until they expire."""

    __tablename__ = "signing_keys"

    # The id orders the keys: the highest signs, the next highest is the previous key.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    algorithm: Mapped[str] = mapped_column(String(10))
    public_jwk: Mapped[str] = mapped_column(Text)
    # AES-GCM ciphertext of the PKCS#8 PEM, bound to the kid as associated data.
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class OutboxMessage(OutboxMessageMixin, Base):
    """Events waiting to be published to user.events."""


class InboxMessage(InboxMessageMixin, Base):
    """Events this service's consumers have handled."""
