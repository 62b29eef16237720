"""Parsers for the human units a stack file uses: durations and memory sizes."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

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
        seconds = float(match.group(1)) * _DURATION_FACTOR[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return seconds


def parse_memory(value: object) -> int:
    """`512Mi`, `1Gi`, `256M` or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a memory size; write e.g. 512Mi or 2Gi")
    if isinstance(value, int):
        size = value
    else:
        match = _MEMORY.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a memory size; write e.g. 512Mi or 2Gi")
        size = int(float(match.group(1)) * _MEMORY_FACTOR[match.group(2)])
    if size <= 0:
        raise ValueError(f"{value!r} must be larger than zero")
    return size
