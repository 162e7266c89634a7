"""Secrets at rest and on the wire: random values, their hashes, and sealed storage.

Refresh tokens and login states are looked up by a SHA-256 of the value, so the database
never holds what a client presents. What must come back in clear (a signing key's private
part, a PKCE verifier) is sealed with AES-GCM under a key derived from the service secret.
"""

import hashlib
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


class SealError(Exception):
    """Ciphertext that this key did not seal, or sealed for another purpose."""


class SecretBox:
    """AES-256-GCM with a key derived from the service secret.

    The associated data binds each ciphertext to the row it belongs to (a key's kid, a login
    state's hash): a ciphertext copied into another row does not open.
    """

    def __init__(self, secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"ledgerline user service: secrets at rest",
        ).derive(secret.encode())
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, associated_data: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def open(self, sealed: bytes, associated_data: bytes) -> bytes:
        nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag:
            raise SealError("the sealed value does not open with this key") from None
