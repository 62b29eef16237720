"""The dashboard's rates and quantiles, against hand-computed histograms."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuvem.gateway.ui.window import IDLE, Reading, Window, quantile, rates

BOUNDS = (0.01, 0.1, 1.0)


def test_quantile_interpolates_inside_its_bucket() -> None:
    # 10 calls: 4 at or below 10 ms, 10 at or below 100 ms.
    counts = (4.0, 10.0, 10.0, 10.0)
    assert quantile(0.5, BOUNDS, counts) == 0.01 + (0.1 - 0.01) * (5 - 4) / (10 - 4)
    assert quantile(0.2, BOUNDS, counts) == 0.01 * 2 / 4


def test_quantile_in_the_inf_bucket_is_the_highest_bound() -> None:
    assert quantile(0.99, BOUNDS, (0.0, 0.0, 1.0, 100.0)) == 1.0


def test_quantile_of_nothing_is_none() -> None:
    assert quantile(0.5, BOUNDS, (0.0, 0.0, 0.0, 0.0)) is None
    assert quantile(0.5, BOUNDS, ()) is None


def test_rates_are_differences_per_second() -> None:
    older = Reading(10.0, calls=100, errors=5, buckets=(50, 90, 100, 100))
    newer = Reading(12.0, calls=120, errors=9, buckets=(50, 110, 120, 120))
    found = rates(newer, older, BOUNDS)
    assert found.rps == 10.0
    assert found.errors == 2.0
    # 20 new calls: 0 below 10 ms, 20 below 100 ms -> the median is half-way up that bucket.
    assert found.p50 == pytest.approx(0.01 + (0.1 - 0.01) * 0.5)
    assert found.p99 == pytest.approx(0.01 + (0.1 - 0.01) * 0.99)


def test_a_reset_counter_counts_from_zero() -> None:
    older = Reading(0.0, calls=500, errors=0, buckets=(500, 500, 500, 500))
    newer = Reading(1.0, calls=3, errors=1, buckets=(3, 3, 3, 3))
    found = rates(newer, older, BOUNDS)
    assert found.rps == 3.0
    assert found.errors == 1.0


def test_window_keeps_one_reading_before_its_span() -> None:
    window = Window(BOUNDS, span=10.0)
    assert window.rates() == IDLE
    for second in range(30):
        window.add(Reading(float(second), second * 2.0, 0.0, (0.0, 0.0, 0.0, second * 2.0)))
    assert window.readings[0].at == 19.0  # 29 - 10: the window covers all of its span
    assert window.rates().rps == 2.0


@given(
    st.lists(st.integers(min_value=0, max_value=1000), min_size=4, max_size=4),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_quantiles_are_ordered_and_within_the_bounds(
    increments: list[int], q1: float, q2: float
) -> None:
    counts = tuple(float(sum(increments[: i + 1])) for i in range(4))
    low, high = sorted((q1, q2))
    a, b = quantile(low, BOUNDS, counts), quantile(high, BOUNDS, counts)
    if counts[-1] == 0:
        assert a is None
        assert b is None
        return
    assert a is not None
    assert b is not None
    assert 0.0 <= a <= b <= BOUNDS[-1]
    assert not math.isnan(a)
