"""The access log: one line per function call, as JSON or as `key=value` text
(NUVEM_ACCESS_LOG, `nuvem up --access-log`).

Off by default: the endpoints hold None then, and a call pays one `is None` test. On, a call
pays an append to a bounded queue: a writer thread formats the entries and writes them in
batches every quarter second, so neither formatting nor a slow stderr (a full pipe to a
journal) ever stalls the event loop. When the writer falls that far behind, the queue drops
the newest entries and counts them (a warning says how many); closing (the gateway's clean
stop) writes every entry still waiting. The key's id is logged, never the key.

The stdlib's QueueHandler was not enough: it formats each record on the caller's thread and
still pays a LogRecord a line, the cost this queue takes off the hot path.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from nuvem import security
from nuvem.cluster.stack_bundle import VERSION_LABEL
from nuvem.errors import BadRequest
from nuvem.gateway.asgi import RequestHeaders, Scope
from nuvem.gateway.batch_writer import INTERVAL, BatchWriter
from nuvem.gateway.line_sinks import LineSink, LoggerSink
from nuvem.stack.function import FunctionSpec

LOGGER = "nuvem.access"
ADMIN = "admin"  # the key id logged for calls made with the admin's password


class AccessFormat(enum.Enum):
    OFF = "off"  # no access log: the default, so the hot path pays nothing
    TEXT = "text"  # time=... function=... status=... as key=value pairs
    JSON = "json"  # one JSON object per line


def access_format(value: str) -> AccessFormat:
    """The format named by NUVEM_ACCESS_LOG or --access-log; BadRequest names the choices."""
    try:
        return AccessFormat(value.strip().lower() or "off")
    except ValueError:
        choices = ", ".join(f.value for f in AccessFormat)
        raise BadRequest(
            f"access log format {value!r} is not one nuvem writes", f"use one of: {choices}"
        ) from None


class AccessEntry(NamedTuple):
    """One call as the access log tells it. A tuple: made on the hot path, where a frozen
    dataclass of eleven fields cost several times as much."""

    time: float  # unix seconds the call arrived
    function: str
    version: str | None  # the bundle version the function runs, or the model's version
    status: int
    duration_ms: float
    call_id: str
    trace_id: str | None
    key_id: str | None  # the API key's id, "admin", or None when no credentials came
    replica: str | None  # the replica that answered; None when none was reached
    method: str
    path: str


@dataclass(slots=True)
class CallNote:
    """What an endpoint learns of a call on its way, for the entry it logs at the end."""

    function: str = ""  # empty: not a call of a function (a health check): nothing logged
    version: str | None = None
    replica: str | None = None


def format_entry(entry: AccessEntry, form: AccessFormat) -> str:
    """The entry's line (pure): JSON with the fields above, or logfmt-like text.

    Written out field by field rather than through a dict and an encoder: at thousands of
    calls a second the writer thread's share of the CPU is the log's whole cost, and this
    cut it by half. The fields that repeat from call to call (function, key, replica, path)
    are quoted once each and remembered."""
    (when, function, version, status, duration, call_id, trace_id, key, replica, method, path) = (
        entry
    )
    duration_ms = round(duration, 3)
    if form is AccessFormat.JSON:
        return (
            f'{{"time":"{_iso(when)}","function":{_json(function)},"version":{_json(version)},'
            f'"status":{status},"duration_ms":{duration_ms!r},"call_id":{_esc(call_id)},'
            f'"trace_id":{_json_once(trace_id)},"key_id":{_json(key)},"replica":{_json(replica)},'
            f'"method":{_json(method)},"path":{_json(path)}}}'
        )
    return (
        f"time={_iso(when)} function={_text(function)} version={_text(version)} "
        f"status={status} duration_ms={duration_ms!r} call_id={_text_once(call_id)} "
        f"trace_id={_text_once(trace_id)} key_id={_text(key)} replica={_text(replica)} "
        f"method={_text(method)} path={_text(path)}"
    )


# The C encoder json.dumps uses for a str with ensure_ascii=False.
_esc: Callable[[str], str] = json.encoder.encode_basestring


def _json_once(value: str | None) -> str:
    return "null" if value is None else _esc(value)


_json = functools.lru_cache(maxsize=1024)(_json_once)  # for the values that repeat


def _iso(unix: float) -> str:
    """`unix` as ISO 8601 UTC to the millisecond (truncated, as isoformat does)."""
    second = math.floor(unix)
    millis = min(int((unix - second) * 1000), 999)
    return f"{_iso_second(second)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4)
def _iso_second(second: int) -> str:
    # A batch's entries share a few seconds: the calendar is worked out once for each.
    return datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


# What would break the key=value reading: a blank, a quote, an equals sign, a backslash.
_QUOTED = re.compile(r'[ "=\\]')


def _text_once(value: str | None) -> str:
    """A value as `key=value` text: as it is, or JSON-quoted where it would break it."""
    if value is None:
        return "-"
    if not value or _QUOTED.search(value) or not value.isprintable():
        return _esc(value)
    return value


_text = functools.lru_cache(maxsize=1024)(_text_once)  # for the values that repeat


def key_id(authorization: str | None, api_key: str | None) -> str | None:
    """Who the credentials name: the key's id (never its secret), the admin, or None."""
    token = api_key
    if token is None and authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic":
            return ADMIN
        if scheme.lower() == "bearer":
            token = value.strip()
    if not token:
        return None
    parsed = security.parse_api_key(token)
    return parsed[0] if parsed else "malformed"


def spec_version(spec: FunctionSpec) -> str | None:
    return spec.labels.get(VERSION_LABEL) or (spec.model.version if spec.model else None)


class AccessLog:
    """Entries of one format, queued by the endpoints and written in batches (see above)."""

    def __init__(
        self, form: AccessFormat, sink: LineSink | None = None, flush: float = INTERVAL
    ) -> None:
        if not flush > 0:  # also refuses NaN
            raise BadRequest(
                f"access log flush interval {flush!r} is not a number of seconds above 0",
                "set NUVEM_ACCESS_LOG_FLUSH to, say, 0.25",
            )
        self.form = form
        self.writer: BatchWriter[AccessEntry] = BatchWriter(
            lambda entry: format_entry(entry, form),
            sink or LoggerSink(logging.getLogger(LOGGER)),
            interval=flush,
            name="access log",
        )
        self.write = self.writer.add  # bound once: the hot path pays no extra call

    def close(self) -> None:
        """Write every entry still queued and stop the writer: the gateway's clean stop."""
        self.writer.close()

    def write_noted(
        self,
        scope: Scope,
        caller: RequestHeaders,
        trace_id: str | None,
        status: int,
        note: CallNote,
        started_wall: float,
        started: float,
    ) -> None:
        """The entry of a call an endpoint followed with a CallNote (the model protocols)."""
        self.write(
            AccessEntry(
                time=started_wall,
                function=note.function,
                version=note.version,
                status=status,
                duration_ms=(time.perf_counter() - started) * 1e3,
                call_id=caller.ensure_call_id(),
                trace_id=trace_id,
                key_id=key_id(caller.authorization, caller.api_key),
                replica=note.replica,
                method=scope["method"],
                path=scope["path"],
            )
        )


def access_log(
    form: AccessFormat, sink: LineSink | None = None, flush: float = INTERVAL
) -> AccessLog | None:
    """What the endpoints hold: None when the log is off. Lines go to `sink`, or as records
    of the `nuvem.access` logger when none is given, every `flush` seconds."""
    return None if form is AccessFormat.OFF else AccessLog(form, sink, flush)
