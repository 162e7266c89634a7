"""Secrets at rest and on the wire: random values, their hashes, and sealed storage.

Refresh tokens and login states are looked up by a SHA-256 of the value, so the database
never holds what a client presents. What must come back in clear (a signing key's private
part, a PKCE verifier) is sealed with AES-GCM under a key derived from the service secret.
A refresh token's successor is derived from it with HMAC under another key from the same
secret, so it can be computed again from the token without being stored.
"""

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random value with `nbytes` of entropy."""
    return secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    """The lookup key of a secret value; one-way, so a leaked table reveals no token."""
    return hashlib.sha256(value.encode()).hexdigest()


def _derive_key(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret.encode()
    )


class SealError(Exception):
    """Ciphertext that this key did not seal, or sealed for another purpose."""


class SecretBox:
    """AES-256-GCM with a key derived from the service secret, and the HMAC (under a second
    derived key) that makes refresh-token successors.

    The associated data binds each ciphertext to the row it belongs to (a key's kid, a login
    state's hash): a ciphertext copied into another row does not open.
    """

    def __init__(self, secret: str) -> None:
        self._aead = AESGCM(_derive_key(secret, b"ledgerline user service: secrets at rest"))
        # A separate key: the same bytes never serve both as a cipher key and a MAC key.
        self._successor_key = _derive_key(
            secret, b"ledgerline user service: refresh token successors"
        )

    def successor_token(self, refresh_token: str) -> str:
        """The refresh token that replaces this one: a URL-safe HMAC-SHA256 of it.

        Only the holder of the service secret can compute it, and computing it again gives
        the same value, so a token presented twice can be answered with the same successor
        while the database still holds hashes only.
        """
        digest = hmac.new(self._successor_key, refresh_token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def open(self, sealed: bytes, associated_data: bytes) -> bytes:
        nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag:
            raise SealError("the sealed value does not open with this key") from None
