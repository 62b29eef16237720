"""Dashboard sessions: signed cookies, expiry, sign-out, the CSRF check."""

from __future__ import annotations

import pytest

from nuvem.errors import Forbidden
from nuvem.gateway.ui.session import Sessions, check_csrf, clear_cookie_header, cookie_header
from support import FakeClock


def test_a_session_is_found_by_its_cookie_only() -> None:
    sessions = Sessions(clock=FakeClock())
    session, cookie = sessions.open()
    assert sessions.find(cookie) is session
    session_id, _, signature = cookie.partition(".")
    assert sessions.find(session_id) is None  # unsigned
    assert sessions.find(f"{session_id}.{'0' * len(signature)}") is None  # forged signature
    other, _ = Sessions(clock=FakeClock()).open()
    assert sessions.find(f"{other.id}.{signature}") is None
    assert sessions.find(None) is None


def test_idle_and_absolute_expiry() -> None:
    clock = FakeClock()
    sessions = Sessions(clock=clock, idle=60.0, lifetime=150.0)
    _, cookie = sessions.open()
    for _ in range(2):
        clock.advance(59.0)
        assert sessions.find(cookie) is not None  # each use restarts the idle time
    clock.advance(61.0)
    assert sessions.find(cookie) is None  # idle too long
    _, cookie = sessions.open()
    for _ in range(3):
        clock.advance(50.0)
        assert sessions.find(cookie) is not None
    clock.advance(1.0)
    assert sessions.find(cookie) is None  # past its lifetime however busy
    assert len(sessions) == 0


def test_close_ends_the_session() -> None:
    sessions = Sessions(clock=FakeClock())
    _, cookie = sessions.open()
    assert sessions.close(cookie)
    assert sessions.find(cookie) is None
    assert not sessions.close(cookie)


def test_the_least_recently_used_session_makes_room() -> None:
    clock = FakeClock()
    sessions = Sessions(clock=clock, limit=2)
    _, first = sessions.open()
    clock.advance()
    _, second = sessions.open()
    clock.advance()
    assert sessions.find(first) is not None  # first is now the most recently used
    sessions.open()
    assert sessions.find(second) is None
    assert sessions.find(first) is not None


def test_cookie_flags() -> None:
    header = cookie_header("abc.def", secure=False, max_age=3600)
    assert header.startswith("nuvem_session=abc.def;")
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in header
    assert "Secure" not in header
    assert cookie_header("x", secure=True, max_age=1).endswith("; Secure")
    assert "Max-Age=0" in clear_cookie_header(secure=False)


def test_unsafe_methods_need_the_token() -> None:
    session, _ = Sessions(clock=FakeClock()).open()
    check_csrf(session, "GET", None)
    check_csrf(session, "post", session.csrf)
    for method, token in [("POST", None), ("DELETE", "wrong"), ("PUT", "")]:
        with pytest.raises(Forbidden, match="X-CSRF-Token"):
            check_csrf(session, method, token)
