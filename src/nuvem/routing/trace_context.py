"""W3C Trace Context (https://www.w3.org/TR/trace-context/): `traceparent` and `tracestate`
read, checked and written, so one trace id follows a call from the client through the
gateway to the handler, into async jobs and their callbacks.

Pure: no I/O but the random span ids (`os.urandom`), which callers may replace."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

VERSION = "00"
SAMPLED = 0x01
# version-traceid-parentid-flags, all lower-case hex (the spec refuses upper case).
_FIELDS = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# tracestate list members: key=value, keys of a simple or a multi-tenant (tenant@system) form.
_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(rf"({_KEY})=({_VALUE})")
MAX_STATE_MEMBERS = 32
MAX_STATE_LENGTH = 512  # what the spec asks every vendor to pass on at least


@dataclass(frozen=True, slots=True)
class TraceContext:
    """Where a call sits in a trace: its trace, the span it came from, and the flags."""

    trace_id: str  # 32 lower-case hex, not all zero
    parent_id: str  # 16 lower-case hex, not all zero: the caller's span
    flags: int = SAMPLED  # 0..255; bit 0 is "sampled"
    state: str = ""  # the tracestate header, checked, or empty

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    def traceparent(self) -> str:
        """The header as version 00 writes it (a newer version is answered as 00)."""
        return f"{VERSION}-{self.trace_id}-{self.parent_id}-{self.flags:02x}"

    def child(self, span_id: str | None = None) -> TraceContext:
        """The context a callee receives: the same trace, this hop's new span as its parent."""
        return TraceContext(self.trace_id, span_id or new_span_id(), self.flags, self.state)

    def headers(self) -> list[tuple[str, str]]:
        """`traceparent`, and `tracestate` when there is one, as request headers."""
        found = [("traceparent", self.traceparent())]
        if self.state:
            found.append(("tracestate", self.state))
        return found


def new_span_id(random: Callable[[int], bytes] = os.urandom) -> str:
    while (span := random(8).hex()) == _ZERO_SPAN:
        pass  # all zero is the spec's "invalid": draw again
    return span


def new_trace_id(random: Callable[[int], bytes] = os.urandom) -> str:
    while (trace := random(16).hex()) == _ZERO_TRACE:
        pass
    return trace


def parse_traceparent(value: str | None) -> tuple[str, str, int] | None:
    """`(trace_id, parent_id, flags)` of a valid header, or None.

    Version 00 must be exactly its 55 characters. A later version (01..fe) may carry more
    after a `-`: the spec has parsers read the fields they know and ignore the rest. ff is
    forbidden. Surrounding blanks are allowed, as for any HTTP header value."""
    if value is None:
        return None
    value = value.strip(" \t")
    matched = _FIELDS.match(value)
    if matched is None:
        return None
    version, trace_id, parent_id, flags = matched.groups()
    if version == "ff":
        return None
    if version == VERSION:
        if len(value) != 55:
            return None
    elif len(value) > 55 and value[55] != "-":
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, int(flags, 16)


def parse_tracestate(value: str | None) -> str:
    """The valid list members of a tracestate header, joined again; empty if none.

    Members that break the grammar, repeat a key, or go past 32 members or 512 characters
    are dropped, which the spec allows; the rest keep their order."""
    if not value:
        return ""
    kept: list[str] = []
    keys: set[str] = set()
    length = 0
    for raw in value.split(","):
        member = raw.strip(" \t")
        if not member:
            continue
        matched = _MEMBER.fullmatch(member)
        if matched is None or matched[1] in keys:
            continue
        added = len(member) + (1 if kept else 0)
        if len(kept) == MAX_STATE_MEMBERS or length + added > MAX_STATE_LENGTH:
            break
        keys.add(matched[1])
        kept.append(member)
        length += added
    return ",".join(kept)


def from_headers(
    traceparent: str | None,
    tracestate: str | None = None,
    random: Callable[[int], bytes] = os.urandom,
) -> tuple[TraceContext, bool]:
    """The caller's context and True, or a new trace and False when its header is missing
    or invalid (its tracestate is then dropped too, as the spec says)."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return TraceContext(new_trace_id(random), new_span_id(random)), False
    trace_id, parent_id, flags = parsed
    return TraceContext(trace_id, parent_id, flags, parse_tracestate(tracestate)), True


Headers = tuple[tuple[str, str], ...] | list[tuple[str, str]]


def stored(headers: Headers) -> TraceContext | None:
    """The context in a stored request's headers (an async job's), if it has a valid one."""
    parent = state = None
    for key, value in headers:
        if key == "traceparent" and parent is None:
            parent = value
        elif key == "tracestate" and state is None:
            state = value
    context, accepted = from_headers(parent, state)
    return context if accepted else None


def trace_id_of(headers: Headers) -> str | None:
    """The trace id in a stored request's headers, if they have a valid traceparent."""
    context = stored(headers)
    return context.trace_id if context else None


def replaced(headers: Headers, context: TraceContext) -> list[tuple[str, str]]:
    """`headers` with their trace context swapped for `context`'s."""
    kept = [(k, v) for k, v in headers if k not in ("traceparent", "tracestate")]
    return kept + context.headers()
