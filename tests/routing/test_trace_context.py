"""W3C Trace Context parsing and writing: valid headers survive a round trip, anything the
spec calls invalid starts a new trace, and a child keeps the trace with a new span."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nuvem.routing import trace_context as tc

hex32 = st.text("0123456789abcdef", min_size=32, max_size=32).filter(lambda s: s != "0" * 32)
hex16 = st.text("0123456789abcdef", min_size=16, max_size=16).filter(lambda s: s != "0" * 16)
flags = st.integers(0, 255)
HEADER = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
SPEC_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_specs_example_parses() -> None:
    assert tc.parse_traceparent(SPEC_EXAMPLE) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        1,
    )


@given(hex32, hex16, flags)
def test_a_valid_header_round_trips(trace_id: str, parent_id: str, flag: int) -> None:
    context = tc.TraceContext(trace_id, parent_id, flag)
    assert HEADER.fullmatch(context.traceparent())
    assert tc.parse_traceparent(context.traceparent()) == (trace_id, parent_id, flag)
    parsed, accepted = tc.from_headers(context.traceparent())
    assert accepted
    assert parsed == context


@given(hex32, hex16, flags)
def test_a_child_keeps_the_trace_and_flags_with_a_new_span(
    trace_id: str, parent_id: str, flag: int
) -> None:
    parent = tc.TraceContext(trace_id, parent_id, flag, "a=1")
    child = parent.child()
    assert (child.trace_id, child.flags, child.state) == (trace_id, flag, "a=1")
    assert child.parent_id != parent_id  # a new span (a clash is a 2**-64 chance)
    assert tc.parse_traceparent(child.traceparent()) is not None


@given(st.text(max_size=80))
def test_anything_else_is_refused_or_a_valid_header(text: str) -> None:
    parsed = tc.parse_traceparent(text)
    if parsed is not None:
        trace_id, parent_id, flag = parsed
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
        assert trace_id != "0" * 32
        assert re.fullmatch(r"[0-9a-f]{16}", parent_id)
        assert parent_id != "0" * 16
        assert 0 <= flag <= 255


@given(hex32, hex16, flags, st.integers(0, 54), st.characters())
def test_one_wrong_character_is_refused(
    trace_id: str, parent_id: str, flag: int, where: int, replacement: str
) -> None:
    header = tc.TraceContext(trace_id, parent_id, flag).traceparent()
    allowed = "-" if where in (2, 35, 52) else "0123456789abcdef"
    assume(replacement not in allowed)
    broken = header[:where] + replacement + header[where + 1 :]
    assume(broken.strip(" \t") == broken)
    assert tc.parse_traceparent(broken) is None


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 has 4 fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  # short parent id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  # short flags
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  # later version, no dash
    ],
)
def test_invalid_headers_start_a_new_trace(header: str | None) -> None:
    assert tc.parse_traceparent(header) is None
    context, accepted = tc.from_headers(header, "vendor=kept?")
    assert not accepted
    assert context.state == ""  # an invalid traceparent takes its tracestate with it
    assert tc.parse_traceparent(context.traceparent()) is not None
    assert context.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_later_version_is_read_for_the_fields_it_shares() -> None:
    header = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-later"
    assert tc.parse_traceparent(header) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        1,
    )
    context, _ = tc.from_headers(header)
    assert context.traceparent() == SPEC_EXAMPLE  # answered as the version we speak


def test_new_ids_are_never_all_zero() -> None:
    draws = itertools.chain([b"\0" * 16], itertools.repeat(b"\x01" * 16))

    def random(n: int) -> bytes:
        return next(draws)[:n]

    assert tc.new_trace_id(random) == "01" * 16
    draws = itertools.chain([b"\0" * 8], itertools.repeat(b"\x02" * 8))
    assert tc.new_span_id(random) == "02" * 8


members = st.from_regex(
    r"\A[a-z][a-z0-9_*/-]{0,10}=[a-zA-Z0-9!#$%&'()*+.:;<>?@\[\]^_`{|}~-]{1,10}\Z"
)


@given(st.lists(members, max_size=40))
def test_tracestate_keeps_valid_members_within_the_limits(found: list[str]) -> None:
    kept = tc.parse_tracestate(",".join(found))
    kept_members = kept.split(",") if kept else []
    assert len(kept_members) <= tc.MAX_STATE_MEMBERS
    assert len(kept) <= tc.MAX_STATE_LENGTH
    keys = [m.partition("=")[0] for m in kept_members]
    assert len(keys) == len(set(keys))
    assert all(m in found for m in kept_members)
    assert tc.parse_tracestate(kept) == kept  # idempotent


def test_tracestate_drops_what_breaks_the_grammar() -> None:
    state = "rojo=00f067aa0ba902b7, Bad=1 ,congo=t61rcWkgMzE,,nokey,x=a=b, rojo=again"
    assert tc.parse_tracestate(state) == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    assert tc.parse_tracestate("tenant@sys=v") == "tenant@sys=v"


def test_headers_carry_the_state_only_when_there_is_one() -> None:
    context = tc.TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert context.headers() == [("traceparent", SPEC_EXAMPLE)]
    with_state = tc.TraceContext(context.trace_id, context.parent_id, 1, "a=b")
    assert with_state.headers()[1] == ("tracestate", "a=b")


def test_the_trace_id_of_stored_headers() -> None:
    assert tc.trace_id_of([("x", "y"), ("traceparent", SPEC_EXAMPLE)]) == (
        "4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert tc.trace_id_of((("traceparent", "garbage"),)) is None
    assert tc.trace_id_of([]) is None
