"""Parsers for the human units a stack file uses: durations and memory sizes."""

from __future__ import annotations

import math
import re
from fractions import Fraction

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
# Fractions keep `9ms` at exactly 0.009 s; the float 0.001 times 9 is 0.009000000000000001.
_DURATION_FACTOR = {
    "ms": Fraction(1, 1000),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
    None: Fraction(1),
}

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)?\s*$")
_MEMORY_FACTOR = {
    None: 1,
    "K": 10**3,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_duration(value: object) -> float:
    """`30s`, `500ms`, `2m`, `1h` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 500ms, 2m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 500ms, 2m or 1h")
        exact = Fraction(match.group(1)) * _DURATION_FACTOR[match.group(2)]
        try:
            seconds = float(exact)
        except OverflowError:
            seconds = math.inf
    # NaN compares false with everything, so it would slip past the check below.
    if math.isnan(seconds):
        raise ValueError(f"{value!r} is not a duration; write e.g. 30s, 500ms, 2m or 1h")
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    if math.isinf(seconds):
        raise ValueError(f"{value!r} is too long; write a finite duration, e.g. 1h")
    return seconds


def parse_memory(value: object) -> int:
    """`512Mi`, `1Gi`, `256M` or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a memory size; write e.g. 512Mi or 2Gi")
    if isinstance(value, int):
        size = value
    elif isinstance(value, float) and math.isfinite(value):
        # str() would turn large floats into `1e+20`, which the pattern rejects.
        size = int(value)
    else:
        match = _MEMORY.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a memory size; write e.g. 512Mi or 2Gi")
        size = int(Fraction(match.group(1)) * _MEMORY_FACTOR[match.group(2)])
    if size <= 0:
        raise ValueError(f"{value!r} must be larger than zero")
    return size
