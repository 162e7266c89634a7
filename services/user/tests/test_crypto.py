"""Sealed secrets open only with the same key and for the same row; refresh-token
successors are the same every time, and only the service secret makes them."""

import re

import pytest

from user.crypto import SealError, SecretBox, new_secret, sha256_hex


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


def test_a_successor_is_the_same_each_time_and_only_this_secret_makes_it() -> None:
    token = new_secret()

    successor = SecretBox("service secret").successor_token(token)

    assert successor == SecretBox("service secret").successor_token(token)
    assert successor != SecretBox("another secret").successor_token(token)
    assert successor != SecretBox("service secret").successor_token(new_secret())
    # Shaped like any other refresh token: 32 bytes, URL-safe.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", successor)
    assert successor not in (token, sha256_hex(token))
