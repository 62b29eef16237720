"""One invocation of a function, as every caller makes it: `/function`, the model protocols
and async jobs. It counts the call, dispatches it, checks the handler's answer against what
HTTP allows and observes the invocation metrics with the status, errors included."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from nuvem.errors import FunctionFailed, NuvemError
from nuvem.metrics.registry import Metrics
from nuvem.routing.dispatch import Target, dispatch
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import CallResult

# Hop-by-hop headers, the length and the trace context are the gateway's to set, not the
# handler's: the client learns the trace from the gateway's own traceparent.
_NOT_ANSWERED = frozenset(
    {b"content-length", b"connection", b"transfer-encoding", b"keep-alive", b"traceparent"}
)


class InvocationTarget(Target, Protocol):
    """A deployed function as an invocation sees it: dispatchable and counted."""

    def count_call(self) -> None: ...


# A handler's answer as HTTP allows it: status, headers (names lower-cased, latin-1 bytes)
# and body; the same triple as the gateway's rendering of an error.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


async def invoke(
    target: InvocationTarget,
    meta: CallMeta,
    body: bytes,
    metrics: Metrics,
    *,
    started: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    deadline: float | None = None,
) -> Answer:
    """Call the function once; its answer, or the NuvemError its caller answers with.

    `started` (perf_counter) is when the request arrived, for the duration metric; now by
    default. `deadline` (on `clock`, the routers' monotonic time) overrides the function's
    timeout, as jobs have their own.
    """
    if started is None:
        started = time.perf_counter()
    target.count_call()
    code = 0  # stays 0 when the call is cancelled (the client went away): not observed
    try:
        answer = checked(target.name, await dispatch(target, meta, body, clock, deadline))
        code = answer[0]
        return answer
    except NuvemError as error:
        code = error.status
        raise
    finally:
        if code and not target.removed:  # a removed function's metrics are gone for good
            metrics.observe_call(target.name, code, time.perf_counter() - started)


def checked(function: str, result: CallResult) -> Answer:
    """The handler's answer as HTTP allows it, or FunctionFailed (500) that says why not."""
    status = result.status
    if not 100 <= status <= 599:
        raise FunctionFailed(
            f"function {function!r} answered with status {status}, which HTTP does not have",
            "return a status between 100 and 599",
        )
    encoded = []
    for key, value in result.headers:
        try:
            raw_key, raw_value = key.lower().encode("latin-1"), value.encode("latin-1")
        except UnicodeEncodeError:
            raise FunctionFailed(
                f"function {function!r} answered with header {key!r}: {value!r}, which is not "
                "latin-1 text",
                "percent-encode or drop non-latin-1 characters in header values",
            ) from None
        if b"\n" in raw_value or b"\r" in raw_value or not raw_key.strip():
            raise FunctionFailed(
                f"function {function!r} answered with a malformed header {key!r}",
                "header names must be non-empty and values must not contain line breaks",
            )
        if raw_key not in _NOT_ANSWERED:
            encoded.append((raw_key, raw_value))
    return status, encoded, result.body
