"""InfluxDB line protocol: one `Point` per line, escaped so that 1.x and 2.x read it alike.

`measurement,tag=value field=1.5,count=3i,ok=true,text="a \\"b\\"" 1700000000000`

Escaping: a measurement escapes commas and spaces; tag keys, tag values and field keys
escape commas, equals signs and spaces; string field values escape double quotes and
backslashes. InfluxDB 1.x keeps any other backslash in a name as it is but cannot read one
that ends a name or stands before an escaped character (`a\\ b` fails to parse), and no
version reads a newline in a name: those are written as `/` and a space. Tags with an empty
value are left out (line protocol has no empty tag), and so are fields whose float is NaN
or infinite (line protocol has no such numbers); a point left with no field is not written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Precision = Literal["ns", "us", "ms", "s"]
FieldValue = float | int | bool | str

NANOSECONDS: dict[Precision, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

_LINE_BREAKS = re.compile(r"[\r\n]")
# A backslash that ends a name or precedes a character escaped after it.
_AMBIGUOUS_BACKSLASH = re.compile(r"\\(?=\Z|[, =\\])")
_NAME_SPECIALS = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_SPECIALS = str.maketrans({",": r"\,", " ": r"\ "})


@dataclass(frozen=True, slots=True)
class Point:
    """One line: `timestamp` in nanoseconds since the epoch."""

    measurement: str
    fields: Mapping[str, FieldValue]
    tags: Mapping[str, str] = field(default_factory=dict)
    timestamp: int = 0


def plain_name(text: str) -> str:
    """`text` with what no InfluxDB version can read in a name replaced (see the module)."""
    text = _LINE_BREAKS.sub(" ", text)
    return _AMBIGUOUS_BACKSLASH.sub("/", text)


def escape_measurement(text: str) -> str:
    return plain_name(text).translate(_MEASUREMENT_SPECIALS)


def escape_name(text: str) -> str:
    """A tag key, tag value or field key."""
    return plain_name(text).translate(_NAME_SPECIALS)


def escape_string(text: str) -> str:
    """A string field value, without its quotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def format_value(value: FieldValue) -> str | None:
    """The field value as line protocol writes it; None for a float it cannot hold."""
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return repr(value)
    return f'"{escape_string(value)}"'


def encode(point: Point, precision: Precision = "ns") -> str | None:
    """One line without its newline; None when no field is left to write."""
    if not point.measurement:
        raise ValueError("a point needs a measurement name")
    fields = []
    for key, value in point.fields.items():
        if not key:
            raise ValueError(f"measurement {point.measurement!r} has a field with no name")
        shown = format_value(value)
        if shown is not None:
            fields.append(f"{escape_name(key)}={shown}")
    if not fields:
        return None
    head = escape_measurement(point.measurement)
    # Sorted tags are what InfluxDB stores; sending them so saves it the sort.
    tags = "".join(
        f",{escape_name(key)}={escape_name(value)}"
        for key, value in sorted(point.tags.items())
        if key and value
    )
    stamp = point.timestamp // NANOSECONDS[precision]
    return f"{head}{tags} {','.join(fields)} {stamp}"


def encode_all(points: Iterable[Point], precision: Precision = "ns") -> list[str]:
    """The lines of `points`, those with nothing to write left out."""
    lines = (encode(point, precision) for point in points)
    return [line for line in lines if line is not None]
