"""The one back-off formula (replica starts, job retries, callbacks): grows, is capped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nuvem.backoff import backoff

bases = st.floats(0.001, 60)
caps = st.floats(0.001, 3600)


@given(attempt=st.integers(1, 200), base=bases, cap=caps)
def test_grows_with_each_failure_until_the_cap(attempt: int, base: float, cap: float) -> None:
    assert backoff(attempt, base, cap) <= backoff(attempt + 1, base, cap)
    assert backoff(attempt, base, cap) <= cap
    assert backoff(1, base, cap) == min(base, cap)


@given(attempt=st.integers(1, 200), base=bases, cap=caps, rand=st.floats(0, 1))
def test_jitter_keeps_between_half_and_all_of_the_delay(
    attempt: int, base: float, cap: float, rand: float
) -> None:
    plain = backoff(attempt, base, cap)
    assert plain / 2 <= backoff(attempt, base, cap, lambda: rand) <= plain


def test_doubles() -> None:
    assert [backoff(n, 0.5, 30.0) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
