"""Dashboard sessions: the cookie a browser gets for the admin password, and its CSRF token.

A session is a random id kept here, in memory, with an idle and an absolute expiry; the
cookie carries the id and an HMAC of it under a key that never leaves this process, so a
forged or truncated cookie is refused before any look-up. Sessions end with the gateway
(signing in again is one password away). The cookie is HttpOnly and SameSite=Strict; every
unsafe request made with it must also carry the session's token in X-CSRF-Token, which the
page reads from its own HTML (a cross-site page can neither read that nor set the header).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from nuvem.errors import Forbidden, Unauthorized

COOKIE = "nuvem_session"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IDLE_SECONDS = 8 * 3600.0
LIFETIME_SECONDS = 24 * 3600.0
MAX_SESSIONS = 256


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    created_at: float
    seen_at: float


class Sessions:
    """The signed-in browsers of this gateway. Used from the event loop and from the
    threads FastAPI runs plain routes in, hence the lock."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        idle: float = IDLE_SECONDS,
        lifetime: float = LIFETIME_SECONDS,
        limit: int = MAX_SESSIONS,
    ) -> None:
        self.clock = clock
        self.idle = idle
        self.lifetime = lifetime
        self.limit = limit
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def _sign(self, session_id: str) -> str:
        return hmac.new(self._key, session_id.encode(), hashlib.sha256).hexdigest()

    def open(self) -> tuple[Session, str]:
        """A new session and the cookie value that names it."""
        now = self.clock()
        session = Session(secrets.token_urlsafe(24), secrets.token_urlsafe(24), now, now)
        with self._lock:
            self._prune(now)
            if len(self._sessions) >= self.limit:  # the least recently used one goes
                oldest = min(self._sessions.values(), key=lambda s: s.seen_at)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session, f"{session.id}.{self._sign(session.id)}"

    def find(self, cookie: str | None) -> Session | None:
        """The live session the cookie names (its idle time restarts), or None."""
        if not cookie:
            return None
        session_id, _, signature = cookie.partition(".")
        if not hmac.compare_digest(signature, self._sign(session_id)):
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.seen_at = now
            return session

    def close(self, cookie: str | None) -> bool:
        session = self.find(cookie)
        if session is None:
            return False
        with self._lock:
            return self._sessions.pop(session.id, None) is not None

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.seen_at > self.idle or now - session.created_at > self.lifetime

    def _prune(self, now: float) -> None:
        for session in [s for s in self._sessions.values() if self._expired(s, now)]:
            del self._sessions[session.id]


def cookie_header(value: str, *, secure: bool, max_age: float) -> str:
    """Set-Cookie for the session: script cannot read it, other sites never send it."""
    flags = f"Path=/; Max-Age={int(max_age)}; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={value}; {flags}" + ("; Secure" if secure else "")


def clear_cookie_header(*, secure: bool) -> str:
    return cookie_header("", secure=secure, max_age=0)


def check_csrf(session: Session, method: str, token: str | None) -> None:
    if method.upper() not in UNSAFE_METHODS:
        return
    if not token or not hmac.compare_digest(token, session.csrf):
        raise Forbidden(
            f"{method} with a dashboard session needs the session's CSRF token",
            "send the token from the page's <meta name='csrf-token'> in the X-CSRF-Token "
            "header, or use the admin's basic auth instead of the cookie",
        )


def sessions_of(connection: HTTPConnection) -> Sessions | None:
    found: Sessions | None = getattr(connection.app.state, "sessions", None)
    return found


def signed_in(connection: HTTPConnection) -> Session | None:
    """The dashboard session a request without Authorization comes with, CSRF checked for
    unsafe methods; None when it has no session cookie. A stale cookie is refused with a
    hint to sign in again rather than ignored, so the browser says why."""
    cookie = connection.cookies.get(COOKIE)
    sessions = sessions_of(connection)
    if cookie is None or sessions is None or "authorization" in connection.headers:
        return None
    session = sessions.find(cookie)
    if session is None:
        raise Unauthorized(
            "the dashboard session has expired or was signed out",
            "sign in again at /ui/login",
        )
    method = connection.scope.get("method", "GET")
    check_csrf(session, method, connection.headers.get(CSRF_HEADER))
    return session
