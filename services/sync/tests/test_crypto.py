"""Sealing API keys: AES-GCM bound to the connection, key ids for rotation, no placeholder
key in production."""

import base64
import uuid

import pytest
from pydantic import SecretStr, ValidationError

from sync.config import SyncSettings
from sync.crypto import Keyring, KeyringError

OLD = "old:" + base64.b64encode(b"a" * 32).decode()
NEW = "new:" + base64.b64encode(b"b" * 32).decode()


def test_a_sealed_key_opens_only_for_its_connection() -> None:
    keyring = Keyring.parse(OLD)
    connection = uuid.uuid4()
    sealed = keyring.seal("sk_live_secret", connection)

    assert b"sk_live_secret" not in sealed.data
    assert keyring.open(sealed, connection) == "sk_live_secret"
    with pytest.raises(KeyringError):
        keyring.open(sealed, uuid.uuid4())


def test_keys_rotate_new_first_old_still_opens() -> None:
    connection = uuid.uuid4()
    sealed_before = Keyring.parse(OLD).seal("sk_1", connection)
    rotated = Keyring.parse(f"{NEW},{OLD}")

    assert rotated.open(sealed_before, connection) == "sk_1"
    assert rotated.seal("sk_2", connection).key_id == "new"
    with pytest.raises(KeyringError):
        Keyring.parse(NEW).open(sealed_before, connection)


@pytest.mark.parametrize(
    "text", ["", "nokey", "k:not-base64!", "k:" + base64.b64encode(b"short").decode()]
)
def test_a_bad_keyring_is_refused(text: str) -> None:
    with pytest.raises(KeyringError):
        Keyring.parse(text)


def test_production_refuses_the_development_key() -> None:
    production = {
        "environment": "production",
        "database_url": SecretStr("mysql+asyncmy://sync_svc:pw@db/sync_svc"),
        "idempotency_secret": SecretStr("x"),
    }
    with pytest.raises(ValidationError, match="connection_key"):
        SyncSettings(**production)  # type: ignore[arg-type]
    SyncSettings(**production, connection_key=SecretStr(OLD))  # type: ignore[arg-type]
