"""Password hashing and API keys."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuvem.security import (
    generate_password,
    hash_password,
    hash_secret,
    new_api_key,
    parse_api_key,
    secret_matches,
    verify_password,
)

# scrypt is deliberately slow (tens of milliseconds), so property tests take few examples.
SLOW = settings(max_examples=10, deadline=None)


@SLOW
@given(st.text())
def test_any_password_round_trips(password: str) -> None:
    assert verify_password(password, hash_password(password))


def test_encoding() -> None:
    scheme, n, r, p, salt, digest = hash_password("hunter2").split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(digest)) == 32


def test_wrong_password_is_rejected() -> None:
    encoded = hash_password("correct horse")
    assert not verify_password("correct horsf", encoded)
    assert not verify_password("", encoded)
    assert not verify_password("Correct horse", encoded)


def test_salt_makes_hashes_differ() -> None:
    assert hash_password("same") != hash_password("same")


def test_hash_never_contains_the_password() -> None:
    password = generate_password()
    assert password not in hash_password(password)


def test_tampered_hash_is_rejected() -> None:
    scheme, n, r, p, salt, digest = hash_password("pw").split("$")
    flipped = base64.b64encode(
        bytes([base64.b64decode(digest)[0] ^ 1]) + base64.b64decode(digest)[1:]
    )
    assert not verify_password("pw", "$".join([scheme, n, r, p, salt, flipped.decode()]))
    assert not verify_password("pw", "$".join([scheme, "8192", r, p, salt, digest]))


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "scrypt",
        "scrypt$16384$8$1$c2FsdA==",
        "bcrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$x$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$1000$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$16384$8$1$not base64!$aGFzaGhhc2hoYXNoaGFzaA==",
        "scrypt$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA==$",
        "scrypt$1048576$64$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==",
    ],
)
def test_malformed_hash_is_rejected(encoded: str) -> None:
    assert verify_password("pw", encoded) is False


def test_unencodable_password_is_rejected() -> None:
    assert verify_password("\udcff", hash_password("pw")) is False


def test_generate_password() -> None:
    passwords = {generate_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", p) for p in passwords)


def test_new_api_key_parses_back() -> None:
    key_id, secret, full = new_api_key()
    assert re.fullmatch(r"[0-9a-f]{12}", key_id)
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert full == f"nv_{key_id}_{secret}"
    assert parse_api_key(full) == (key_id, secret)


def test_api_keys_are_unique() -> None:
    keys = [new_api_key() for _ in range(20)]
    assert len({k[0] for k in keys}) == len({k[1] for k in keys}) == 20


@pytest.mark.parametrize(
    "full",
    [
        "",
        "nv_",
        "nv__",
        "nv_0123456789ab_",
        "nv_0123456789ab",
        "xx_0123456789ab_" + "a" * 64,
        "nv_0123456789AB_" + "a" * 64,
        "nv_0123456789a_" + "a" * 64,
        "nv_0123456789ab_" + "a" * 63,
        "nv_0123456789ab_" + "a" * 65,
        "nv_0123456789ab_" + "a" * 63 + "_",
        "nv_0123456789ab_" + "a" * 64 + "\n",
        " nv_0123456789ab_" + "a" * 64,
        "Bearer nv_0123456789ab_" + "a" * 64,
    ],
)
def test_malformed_api_key_is_none(full: str) -> None:
    assert parse_api_key(full) is None


@given(st.text())
def test_parse_accepts_only_exact_keys(text: str) -> None:
    parsed = parse_api_key(text)
    assert parsed is None or f"nv_{parsed[0]}_{parsed[1]}" == text


def test_secret_hash() -> None:
    _key_id, secret, full = new_api_key()
    digest = hash_secret(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert secret not in digest
    assert full not in digest
    assert secret_matches(secret, digest)
    assert not secret_matches(secret[:-1] + ("0" if secret[-1] != "0" else "1"), digest)
    assert not secret_matches(secret, "")
    assert not secret_matches(secret, "é" * 64)


@given(st.text(), st.text())
def test_secret_matches_only_its_own_hash(secret: str, other: str) -> None:
    assert secret_matches(secret, hash_secret(secret))
    assert secret_matches(other, hash_secret(secret)) == (other == secret)
