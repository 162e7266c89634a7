"""Sealed secrets open only with the same key and for the same row."""

import pytest

from user.crypto import SealError, SecretBox, sha256_hex


def test_a_sealed_value_opens_with_its_key_and_row() -> None:
    box = SecretBox("service secret")

    sealed = box.seal(b"private key", b"kid-1")

    assert b"private key" not in sealed
    assert box.open(sealed, b"kid-1") == b"private key"


def test_a_sealed_value_does_not_open_for_another_row_or_key() -> None:
    sealed = SecretBox("service secret").seal(b"private key", b"kid-1")

    with pytest.raises(SealError):
        SecretBox("service secret").open(sealed, b"kid-2")
    with pytest.raises(SealError):
        SecretBox("another secret").open(sealed, b"kid-1")


def test_the_same_value_seals_differently_each_time() -> None:
    box = SecretBox("service secret")

    assert box.seal(b"x", b"row") != box.seal(b"x", b"row")


def test_a_lookup_hash_is_sha256_hex() -> None:
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
