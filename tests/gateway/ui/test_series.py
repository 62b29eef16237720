"""The fixed-size chart history of one function."""

from __future__ import annotations

import pytest

from nuvem.gateway.ui.series import COLUMNS, Series


def test_keeps_the_newest_points_oldest_first() -> None:
    series = Series(capacity=3)
    for second in range(5):
        series.add(float(second), {"rps": second * 10.0, "p50": None})
    columns = series.columns()
    assert len(series) == 3
    assert columns["time"] == [2.0, 3.0, 4.0]
    assert columns["rps"] == [20.0, 30.0, 40.0]
    assert columns["p50"] == [None, None, None]  # no value is null, never NaN (not JSON)
    assert set(columns) == {"time", *COLUMNS}


def test_since_leaves_out_older_points() -> None:
    series = Series(capacity=10)
    for second in range(4):
        series.add(float(second), {"ready": 1.0})
    assert series.columns(since=2.0)["time"] == [2.0, 3.0]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Series(0)
