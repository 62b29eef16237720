"""Line protocol: what the encoder writes, read back by a parser that follows InfluxDB's
rules (a backslash escapes the specials of its part; any other backslash is literal)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuvem.metrics.line_protocol import FieldValue, Point, encode, encode_all, plain_name


def _split(text: str, stops: str) -> tuple[str, str, str]:
    """(the part up to the first unescaped stop, that stop, the rest)."""
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            i += 2
            continue
        if text[i] in stops:
            return text[:i], text[i], text[i + 1 :]
        i += 1
    return text, "", ""


def _unescape(text: str, specials: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in specials:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _value(text: str) -> FieldValue:
    if text.startswith('"'):
        assert len(text) >= 2, text
        assert text.endswith('"'), text
        return _unescape(text[1:-1], '"\\')
    if text in ("true", "false"):
        return text == "true"
    if text.endswith("i"):
        return int(text[:-1])
    return float(text)


def parse(line: str) -> Point:
    head, stop, rest = _split(line, ", ")
    measurement = _unescape(head, ", ")
    tags: dict[str, str] = {}
    while stop == ",":
        pair, stop, rest = _split(rest, ", ")
        key, eq, value = _split(pair, "=")
        assert eq == "=", line
        tags[_unescape(key, ",= ")] = _unescape(value, ",= ")
    fields: dict[str, FieldValue] = {}
    while True:
        key, eq, rest = _split(rest, "=")
        assert eq == "=", line
        if rest.startswith('"'):  # quotes matter in a field's value only
            body, quote, rest = _split(rest[1:], '"')
            assert quote == '"', line
            value, stop, rest = '"' + body + '"', rest[:1], rest[1:]
        else:
            value, stop, rest = _split(rest, ", ")
        fields[_unescape(key, ",= ")] = _value(value)
        if stop != ",":
            break
    assert stop == " ", line
    assert rest.isdigit(), line
    return Point(measurement, fields, tags, int(rest))


text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
names = text.filter(lambda t: not t.startswith("#"))
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.text(max_size=12),
)
points = st.builds(
    Point,
    measurement=names,
    fields=st.dictionaries(text, values, min_size=1, max_size=4),
    tags=st.dictionaries(text, text, max_size=4),
    timestamp=st.integers(0, 2**62),
)


@settings(max_examples=400, deadline=None)
@given(points)
def test_a_point_reads_back_as_written(point: Point) -> None:
    line = encode(point)
    assert line is not None
    got = parse(line)
    assert got.measurement == plain_name(point.measurement)
    assert got.tags == {plain_name(k): plain_name(v) for k, v in point.tags.items()}
    assert got.fields == {plain_name(k): v for k, v in point.fields.items()}
    assert got.timestamp == point.timestamp


@given(text)
def test_names_lose_only_what_influxdb_cannot_read(name: str) -> None:
    plain = plain_name(name)
    assert plain_name(plain) == plain
    assert "\n" not in plain
    assert "\r" not in plain
    # 2.x would read `\\` as one backslash, and 1.x cannot read one before an escape.
    assert "\\\\" not in plain
    assert not plain.endswith("\\")
    if not any(c in name for c in "\\\r\n"):
        assert plain == name


def test_the_escaping_rules_by_example() -> None:
    point = Point(
        "cpu load,x=1",
        {"a b": 1.5, "n": 3, "ok": True, "s": 'say "hi" \\o/'},
        {"host name": "a,b=c", "empty": ""},
        1_700_000_000_123_000_000,
    )
    assert encode(point, "ms") == (
        r"cpu\ load\,x=1,host\ name=a\,b\=c a\ b=1.5,n=3i,ok=true,"
        r's="say \"hi\" \\o/" 1700000000123'
    )


def test_numbers_line_protocol_has_no_word_for_are_left_out() -> None:
    keep = Point("m", {"nan": math.nan, "inf": math.inf, "x": 2.0})
    assert encode(keep) == "m x=2.0 0"
    assert encode(Point("m", {"nan": math.nan})) is None
    assert encode_all([Point("m", {"inf": -math.inf}), Point("m", {"v": 1.0})]) == ["m v=1.0 0"]


@pytest.mark.parametrize(
    ("point", "problem"),
    [
        (Point("", {"v": 1.0}), "measurement"),
        (Point("m", {"": 1.0}), "no name"),
    ],
)
def test_a_point_without_names_is_a_programming_error(point: Point, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        encode(point)
