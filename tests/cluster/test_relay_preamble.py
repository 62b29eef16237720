"""The container relay's preamble (cluster/relay_preamble.py): pure make and check, the
replay guard, on explicit clocks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nuvem.cluster.relay_preamble import (
    MAX_PREAMBLE,
    WINDOW_MS,
    Admitted,
    Nonces,
    Refused,
    check_preamble,
    make_preamble,
    signer,
)

SECRET = bytes(range(32))
NOW = 1_800_000_000_000
NONCE = bytes(16)


def line_of(preamble: bytes) -> bytes:
    assert preamble.endswith(b"\n")
    return preamble[:-1]


def reason(verdict: Admitted | Refused) -> str:
    assert isinstance(verdict, Refused), verdict
    return verdict.reason


def test_a_preamble_made_with_the_secret_is_admitted() -> None:
    preamble = make_preamble(SECRET, "echo-1", NOW, NONCE)
    assert len(preamble) <= MAX_PREAMBLE
    verdict = check_preamble(line_of(preamble), SECRET, "echo-1", NOW + 500)
    assert verdict == Admitted(NONCE.hex(), NOW)


def test_the_wrong_secret_is_refused() -> None:
    preamble = make_preamble(bytes(32), "echo-1", NOW, NONCE)
    assert "not signed" in reason(check_preamble(line_of(preamble), SECRET, "echo-1", NOW))


def test_another_replicas_preamble_is_refused() -> None:
    preamble = make_preamble(SECRET, "echo-2", NOW, NONCE)
    assert "names replica 'echo-2'" in reason(
        check_preamble(line_of(preamble), SECRET, "echo-1", NOW)
    )


def test_an_http_request_or_nothing_is_not_a_preamble() -> None:
    for line in (b"GET / HTTP/1.1\r", b"", b"\xff\xfe", b"NUVEM-RELAY-1 echo-1"):
        assert "did not start with the relay's preamble" in reason(
            check_preamble(line, SECRET, "echo-1", NOW)
        )


def test_a_truncated_or_altered_preamble_is_refused() -> None:
    line = line_of(make_preamble(SECRET, "echo-1", NOW, NONCE))
    assert isinstance(check_preamble(line[:-1], SECRET, "echo-1", NOW), Refused)
    # The time moved on, the signature kept: refused, so a replayer cannot refresh one.
    parts = line.split(b" ")
    parts[2] = str(NOW + 1).encode()
    assert "not signed" in reason(check_preamble(b" ".join(parts), SECRET, "echo-1", NOW))


def test_a_preamble_outside_the_window_is_refused_naming_the_clocks() -> None:
    line = line_of(make_preamble(SECRET, "echo-1", NOW, NONCE))
    assert isinstance(check_preamble(line, SECRET, "echo-1", NOW + WINDOW_MS), Admitted)
    late = reason(check_preamble(line, SECRET, "echo-1", NOW + WINDOW_MS + 1))
    assert "60s away from this node's clock" in late
    assert "NTP" in late
    assert isinstance(check_preamble(line, SECRET, "echo-1", NOW - WINDOW_MS - 1), Refused)


def test_a_replayed_preamble_is_refused_and_old_nonces_are_forgotten() -> None:
    nonces = Nonces()
    first = Admitted("a" * 32, NOW)
    assert nonces.admit(first, NOW) is None
    assert "replay" in reason_of(nonces.admit(first, NOW + 10))
    assert nonces.admit(Admitted("b" * 32, NOW), NOW) is None
    # Past twice the window nothing of then can be admitted again, so it is dropped.
    assert nonces.admit(Admitted("c" * 32, NOW + 3 * WINDOW_MS), NOW + 3 * WINDOW_MS) is None
    assert len(nonces) == 1


def test_the_guard_is_bounded() -> None:
    nonces = Nonces(limit=2)
    assert nonces.admit(Admitted("a" * 32, NOW), NOW) is None
    assert nonces.admit(Admitted("b" * 32, NOW), NOW) is None
    assert "more than 2 new connections" in reason_of(nonces.admit(Admitted("c" * 32, NOW), NOW))


def reason_of(refused: Refused | None) -> str:
    assert refused is not None
    return refused.reason


def test_the_signer_makes_a_fresh_preamble_each_time() -> None:
    sign = signer(SECRET, "echo-1")
    first, second = sign(), sign()
    assert first != second
    nonces = Nonces()
    for preamble in (first, second):
        verdict = check_preamble(line_of(preamble), SECRET, "echo-1", NOW)
        # Made on this machine's clock, far from NOW: only the time is wrong.
        assert "away from this node's clock" in reason(verdict)
        parts = line_of(preamble).split(b" ")
        now = int(parts[2])
        admitted = check_preamble(line_of(preamble), SECRET, "echo-1", now)
        assert isinstance(admitted, Admitted)
        assert nonces.admit(admitted, now) is None


@given(st.binary(max_size=MAX_PREAMBLE))
def test_no_bytes_without_the_secret_pass(line: bytes) -> None:
    assert isinstance(check_preamble(line, SECRET, "echo-1", NOW), Refused)
