"""Sealing the platforms' API keys at rest: AES-256-GCM with keys from the environment.

SYNC_CONNECTION_KEY holds "id:base64key" pairs, comma separated. The first seals new keys;
all of them open, so a key rotates by putting a new one first and keeping the old one until
every connection has been sealed again. The key id is stored beside each ciphertext, and the
connection's id is bound in as associated data, so a sealed key copied onto another row does
not open.
"""

import base64
import binascii
import hashlib
import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.config import DEVELOPMENT_PLACEHOLDER

NONCE_BYTES = 12


class KeyringError(ValueError):
    """SYNC_CONNECTION_KEY is not usable (the message never holds key material)."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    data: bytes


class Keyring:
    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    @classmethod
    def parse(cls, text: str) -> "Keyring":
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            key_id, _, material = entry.partition(":")
            if not key_id or not material:
                raise KeyringError("each SYNC_CONNECTION_KEY entry is id:base64key")
            keys[key_id] = _key_bytes(material)
            order.append(key_id)
        if not order:
            raise KeyringError("SYNC_CONNECTION_KEY holds no key")
        return cls(keys, order[0])

    def seal(self, secret: str, connection_id: uuid.UUID) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        box = self._keys[self.current].encrypt(nonce, secret.encode(), connection_id.bytes)
        return Sealed(self.current, nonce + box)

    def open(self, sealed: Sealed, connection_id: uuid.UUID) -> str:
        aead = self._keys.get(sealed.key_id)
        if aead is None:
            raise KeyringError(f"no key with id {sealed.key_id!r} to open an API key")
        nonce, box = sealed.data[:NONCE_BYTES], sealed.data[NONCE_BYTES:]
        try:
            return aead.decrypt(nonce, box, connection_id.bytes).decode()
        except InvalidTag:
            raise KeyringError("an API key does not open with its key id") from None


def _key_bytes(material: str) -> bytes:
    if material == DEVELOPMENT_PLACEHOLDER:
        # Development only: production refuses any setting holding the placeholder.
        return hashlib.sha256(material.encode()).digest()
    try:
        key = base64.b64decode(material, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError("a SYNC_CONNECTION_KEY key is not base64") from None
    if len(key) != 32:
        raise KeyringError("a SYNC_CONNECTION_KEY key must be 32 bytes (AES-256)")
    return key
