"""Password hashing and API keys, on the standard library alone."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# Stored hashes are ours, but a tampered one must not make verify allocate unbounded memory:
# the standard parameters need 16 MiB (128 * n * r), this allows up to 64 MiB.
_SCRYPT_MAXMEM = 64 * 1024 * 1024

API_KEY_PREFIX = "nv"
_API_KEY = re.compile(r"nv_([0-9a-f]{12})_([0-9a-f]{64})")


def hash_password(password: str) -> str:
    """A salted scrypt hash, encoded as `scrypt$n$r$p$salt_b64$hash_b64`."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)]
    )


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` hashes to `encoded`; False for a wrong password or a malformed hash."""
    try:
        scheme, n, r, p, salt, expected_b64 = encoded.split("$")
        expected = _unb64(expected_b64)
        if scheme != "scrypt" or not 16 <= len(expected) <= 64:
            return False
        digest = _scrypt(password, _unb64(salt), int(n), int(r), int(p), dklen=len(expected))
    except (ValueError, binascii.Error):
        # ValueError also covers parameters scrypt rejects and a password that UTF-8 cannot
        # encode (lone surrogates), which no stored hash can match.
        return False
    return hmac.compare_digest(digest, expected)


def generate_password() -> str:
    """A random password for a fresh installation's admin (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def new_api_key() -> tuple[str, str, str]:
    """A new key as `(key_id, secret, full_key)`, where full_key is `nv_<key_id>_<secret>`.

    key_id is 12 lowercase hex characters and may be shown and stored; the secret is 64 hex
    characters (256 bits), shown once and stored only as `hash_secret(secret)`. Both are hex
    so that splitting the full key on `_` is unambiguous.
    """
    key_id = secrets.token_hex(6)
    secret = secrets.token_hex(32)
    return key_id, secret, f"{API_KEY_PREFIX}_{key_id}_{secret}"


def parse_api_key(full: str) -> tuple[str, str] | None:
    """`(key_id, secret)` of a key made by `new_api_key`; None when `full` is not one."""
    match = _API_KEY.fullmatch(full)
    return None if match is None else (match[1], match[2])


def hash_secret(secret: str) -> str:
    """sha256 hex of an API key's secret.

    A fast hash is right here, unlike for passwords: the secret is 256 random bits, so there
    is nothing to guess, and it is checked on every request.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    """Whether `secret` hashes to `secret_hash`, in time independent of where they differ."""
    return hmac.compare_digest(hash_secret(secret).encode(), secret_hash.encode())


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = _HASH_BYTES) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=dklen
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
