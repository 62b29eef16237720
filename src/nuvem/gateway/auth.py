"""Who may do what: admin credentials for /system, API keys for invoking functions."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from nuvem import security
from nuvem.errors import Forbidden, NotFound, Overloaded, StoreUnreachable, Unauthorized
from nuvem.gateway.rate_limit import RateLimiter, key_limit
from nuvem.stores.records import ApiKeyRecord, RecordStore

ADMIN_USER = "admin"
ADMIN_HASH_SETTING = "admin_password_hash"
ADMIN_PASSWORD_FILE = "admin-password"
KEY_CACHE_SECONDS = 5.0  # how long a revocation made by another gateway may take to apply

Headers = Iterable[tuple[bytes, bytes]]


def ensure_admin(records: RecordStore, state_dir: Path, given_password: str | None) -> Path | None:
    """Create the admin credentials on first start.

    The password is `given_password` (NUVEM_ADMIN_PASSWORD) when set, else generated and
    written, readable by the owner only, to the returned file. Only its hash is stored.
    """
    if records.get_setting(ADMIN_HASH_SETTING) is not None:
        path = state_dir / ADMIN_PASSWORD_FILE
        return path if path.exists() else None
    password = given_password or security.generate_password()
    records.set_setting(ADMIN_HASH_SETTING, security.hash_password(password))
    if given_password:
        return None
    path = state_dir / ADMIN_PASSWORD_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(password + "\n")
    return path


class Authenticator:
    def __init__(
        self,
        records: RecordStore,
        clock: Callable[[], float] = time.monotonic,
        limiter: RateLimiter | None = None,
        default_rate: float = 0.0,
        default_burst: int = 0,
    ) -> None:
        self.records = records
        self.clock = clock
        # Calls per second per API key (its own limit, else these defaults; 0: none). The
        # admin is not limited.
        self.limiter = limiter
        self.default_rate = default_rate
        self.default_burst = default_burst
        # Verified admin passwords, as keyed digests, so scrypt runs once per password and
        # process rather than on every call; the key never leaves this process.
        self._pepper = secrets.token_bytes(32)
        self._admin_ok: set[bytes] = set()
        self._keys: dict[str, tuple[ApiKeyRecord | None, float]] = {}

    # -- admin -----------------------------------------------------------------------------

    def check_admin(self, authorization: str | None) -> None:
        if not authorization:
            raise Unauthorized(
                "this endpoint needs the admin credentials",
                "send HTTP basic auth as admin (curl -u admin:$NUVEM_ADMIN_PASSWORD)",
            )
        if authorization.partition(" ")[0].lower() == "bearer":
            raise Unauthorized(
                "this endpoint needs the admin credentials; an API key only invokes functions "
                "(/function, /async-function, /v2, /predictions)",
                "send HTTP basic auth as admin (curl -u admin:$NUVEM_ADMIN_PASSWORD)",
            )
        if not self._admin_valid(authorization):
            raise Unauthorized(
                "the admin credentials are wrong",
                "the password is in the file `nuvem up` printed, or NUVEM_ADMIN_PASSWORD",
            )

    def _admin_valid(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep or not hmac.compare_digest(user.encode(), ADMIN_USER.encode()):
            return False
        return self.admin_password_valid(password)

    def admin_password_valid(self, password: str) -> bool:
        """Whether `password` is the admin's (the dashboard's sign-in form asks this)."""
        digest = hmac.new(self._pepper, password.encode(), hashlib.sha256).digest()
        if digest in self._admin_ok:
            return True
        encoded = self.records.get_setting(ADMIN_HASH_SETTING)
        if encoded is None or not security.verify_password(password, encoded):
            return False
        if len(self._admin_ok) > 64:
            self._admin_ok.clear()
        self._admin_ok.add(digest)
        return True

    # -- API keys --------------------------------------------------------------------------

    def check_invoke(
        self,
        authorization: str | None,
        api_key: str | None,
        function: str,
        called: str | None = None,
    ) -> None:
        """Allow an API key (Bearer or X-API-Key) for this function, or the admin.

        `called` is what the caller named when that is not the function itself (a model,
        whose default version a function serves), so errors speak of what they called."""
        what = f"{called} (served by function {function!r})" if called else repr(function)
        record = self.check_caller(authorization, api_key, f"invoking {what}")
        if record is None:
            return
        if not record.allows(function):
            allowed = ", ".join(record.functions or ())
            raise Forbidden(
                f"API key {record.id} may not invoke {what} (it may invoke: {allowed})",
                f"create a key for it: nuvem keys create --functions {function}",
            )
        rate, burst = key_limit(record, self.default_rate, self.default_burst)
        if self.limiter is not None and rate > 0:
            wait = self.limiter.take(record.id, rate, burst)
            if wait > 0:
                raise Overloaded(
                    f"API key {record.id} is over its rate limit ({rate:g} calls/s, {burst} "
                    "at once)",
                    "retry after the time in Retry-After, or raise the key's limit: "
                    f"nuvem keys limit {record.id} --rate N",
                    retry_after=wait,
                )

    def check_caller(
        self, authorization: str | None, api_key: str | None, doing: str = "this call"
    ) -> ApiKeyRecord | None:
        """The caller's valid API key, or None for the admin; else Unauthorized.

        Whether the key may invoke a given function is the caller's next check."""
        token = api_key
        if token is None and authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                token = value.strip()
            elif scheme.lower() == "basic" and self._admin_valid(authorization):
                return None
        if not token:
            raise Unauthorized(
                f"{doing} needs an API key",
                "send `Authorization: Bearer <key>` or `X-API-Key: <key>`; "
                "create one with `nuvem keys create`",
            )
        record = self._key_for(token)
        if record is None:
            raise Unauthorized(
                "the API key is unknown or revoked", "create a new one with `nuvem keys create`"
            )
        return record

    def _key_for(self, token: str) -> ApiKeyRecord | None:
        parsed = security.parse_api_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        now = self.clock()
        cached = self._keys.get(key_id)
        if cached is None or cached[1] < now:
            try:
                cached = (self.records.get_key(key_id), now + KEY_CACHE_SECONDS)
            except StoreUnreachable:
                if cached is None:
                    raise
                # A database restart must not fail the calls of keys this gateway knows:
                # the record seen last holds until the database answers again.
            else:
                self._keys[key_id] = cached
        record = cached[0]
        if record is None or record.revoked_at is not None:
            return None
        if not security.secret_matches(secret, record.secret_hash):
            return None
        return record

    def create_key(
        self,
        name: str,
        functions: tuple[str, ...] | None,
        rate: float | None = None,
        burst: int | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        key_id, secret, full = security.new_api_key()
        record = ApiKeyRecord(
            id=key_id,
            name=name,
            secret_hash=security.hash_secret(secret),
            functions=functions,
            created_at=time.time(),
            rate=rate,
            burst=burst,
        )
        self.records.put_key(record)
        self._keys.pop(key_id, None)
        return record, full

    def limit_key(self, key_id: str, rate: float | None, burst: int | None) -> ApiKeyRecord:
        """Give a key its own rate limit (None: back to the gateway's default)."""
        record = self.records.get_key(key_id)
        if record is None or record.revoked_at is not None:
            raise NotFound(f"API key {key_id!r} does not exist or is revoked", "see nuvem keys ls")
        record = dataclasses.replace(record, rate=rate, burst=burst)
        self.records.put_key(record)
        # Here at once; other gateways within their key cache's lifetime (a few seconds).
        self._keys.pop(key_id, None)
        return record

    def revoke_key(self, key_id: str) -> bool:
        revoked = self.records.revoke_key(key_id, time.time())
        self._keys.pop(key_id, None)
        return revoked
