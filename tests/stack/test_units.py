from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuvem.stack.units import parse_duration, parse_memory

# The machine is shared; a slow example is not a failure.
relaxed = settings(deadline=None)

SECONDS_PER = {"ms": None, "s": 1, "m": 60, "h": 3600}
BYTES_PER = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
ANYTHING = st.one_of(
    st.text(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)


@relaxed
@given(n=st.integers(min_value=1, max_value=10**12), unit=st.sampled_from(sorted(SECONDS_PER)))
def test_whole_durations_parse_to_the_exact_seconds(n: int, unit: str) -> None:
    factor = SECONDS_PER[unit]
    # n / 1000 is the correctly rounded float; n * 0.001 is not (9 * 0.001 != 0.009).
    expected = n / 1000 if factor is None else float(n * factor)
    assert parse_duration(f"{n}{unit}") == expected


@relaxed
@given(n=st.integers(min_value=1, max_value=10**12), space=st.sampled_from(["", " ", "  "]))
def test_a_bare_number_is_seconds(n: int, space: str) -> None:
    assert parse_duration(f"{space}{n}{space}") == float(n)
    assert parse_duration(n) == float(n)


@relaxed
@given(st.floats(min_value=1e-9, max_value=1e12))
def test_float_seconds_pass_through(value: float) -> None:
    assert parse_duration(value) == value


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("500ms", 0.5),
        ("9ms", 0.009),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("0.1h", 360.0),
        ("2 m", 120.0),
        ("0.25", 0.25),
    ],
)
def test_duration_examples(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "value", ["soon", "-5s", "5 sec", "", "1d", "1e3s", "nan", True, math.nan, "30S"]
)
def test_not_a_duration_says_how_to_write_one(value: object) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; write e\.g\. 30s, 500ms, 2m or 1h"):
        parse_duration(value)


@pytest.mark.parametrize("value", [0, "0s", "0ms", 0.0, -1, -0.5])
def test_durations_must_be_positive(value: object) -> None:
    with pytest.raises(ValueError, match="must be longer than zero"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["1" + "0" * 400 + "s", math.inf])
def test_endless_durations_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration(value)


@relaxed
@given(ANYTHING)
def test_duration_is_positive_and_finite_or_a_value_error(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds)
    assert seconds > 0


@relaxed
@given(n=st.integers(min_value=1, max_value=10**9), unit=st.sampled_from(sorted(BYTES_PER)))
def test_whole_memory_sizes_parse_to_the_exact_bytes(n: int, unit: str) -> None:
    assert parse_memory(f"{n}{unit}") == n * BYTES_PER[unit]


@relaxed
@given(st.integers(min_value=1, max_value=10**18))
def test_a_bare_number_is_bytes(n: int) -> None:
    assert parse_memory(n) == n
    assert parse_memory(str(n)) == n


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512Mi", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("256M", 256 * 10**6),
        ("1.5Gi", 3 * 2**29),
        ("0.5Ki", 512),
        ("1.1Gi", 1181116006),
        (1e20, 10**20),
        (1.5, 1),
    ],
)
def test_memory_examples(text: object, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("value", ["lots", "512m", "512MB", "-1Gi", "1.5e9", "", False, math.nan])
def test_not_a_memory_size_says_how_to_write_one(value: object) -> None:
    with pytest.raises(ValueError, match=r"is not a memory size; write e\.g\. 512Mi or 2Gi"):
        parse_memory(value)


@pytest.mark.parametrize("value", [0, "0Mi", "0.1", -5])
def test_memory_must_be_positive(value: object) -> None:
    with pytest.raises(ValueError, match="must be larger than zero"):
        parse_memory(value)


@relaxed
@given(ANYTHING)
def test_memory_is_positive_or_a_value_error(value: object) -> None:
    try:
        size = parse_memory(value)
    except ValueError:
        return
    assert isinstance(size, int)
    assert size > 0
