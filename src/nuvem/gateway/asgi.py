"""The raw-ASGI toolkit of the gateway's hot paths (functions, async jobs, model protocols):
the ASGI types, the request body with its limit, the request headers read once, answers,
and the one place a `NuvemError` becomes an HTTP answer (FastAPI's handler uses it too)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from nuvem.errors import MethodNotAllowed, NuvemError, PayloadTooLarge
from nuvem.routing.trace_context import TraceContext, from_headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RawHeaders = list[tuple[bytes, bytes]]

MAX_BODY = 64 * 2**20
# Credentials stop at the gateway; hop-by-hop headers are the gateway's own business.
_CREDENTIALS = (b"authorization", b"x-api-key")
_NOT_FORWARDED = frozenset({*_CREDENTIALS, b"connection", b"keep-alive", b"transfer-encoding"})
# Trace context is read, then forwarded as the gateway's own hop (ensure_trace).
_HELD = frozenset({*_NOT_FORWARDED, b"traceparent", b"tracestate"})
# Every 401 names both ways in: API keys (Bearer) and the admin's password (Basic).
AUTHENTICATE = b'Bearer realm="nuvem", Basic realm="nuvem"'
_JSON = (b"content-type", b"application/json")


class RequestHeaders:
    """What the gateway reads from a request's headers, in one pass."""

    __slots__ = (
        "api_key",
        "authorization",
        "call_id",
        "forwarded",
        "trace",
        "traceparent",
        "tracestate",
    )

    def __init__(self, scope: Scope) -> None:
        self.authorization: str | None = None
        self.api_key: str | None = None
        self.call_id: str | None = None  # the client's X-Call-Id, until ensure_call_id()
        self.traceparent: str | None = None  # the client's, as sent
        self.tracestate: str | None = None
        self.trace: TraceContext | None = None  # this hop's, once ensure_trace() made it
        # For the function: every header but the credentials and the hop-by-hop ones.
        self.forwarded: list[tuple[str, str]] = []
        forwarded = self.forwarded
        # ASGI servers give header names lower-cased, as bytes: compare them as they come.
        for raw_key, raw_value in scope["headers"]:
            if raw_key in _HELD:
                if raw_key == b"authorization":
                    self.authorization = raw_value.decode("latin-1")
                elif raw_key == b"x-api-key":
                    self.api_key = raw_value.decode("latin-1")
                elif raw_key == b"traceparent":
                    # Two traceparent headers make the context invalid (the spec): a new trace.
                    once = self.traceparent is None
                    self.traceparent = raw_value.decode("latin-1") if once else ""
                elif raw_key == b"tracestate":
                    # Several tracestate headers are one list, joined in order (RFC 9110).
                    value = raw_value.decode("latin-1")
                    joined: str | None = self.tracestate
                    self.tracestate = value if joined is None else f"{joined},{value}"
                continue
            value = raw_value.decode("latin-1")
            if raw_key == b"x-call-id":
                self.call_id = value
            forwarded.append((raw_key.decode("latin-1"), value))

    def ensure_call_id(self) -> str:
        """The call's id: the client's, or a new one, then forwarded to the function too."""
        if self.call_id is None:
            self.call_id = os.urandom(16).hex()
            self.forwarded.append(("x-call-id", self.call_id))
        return self.call_id

    def ensure_trace(self) -> TraceContext:
        """This hop's trace context: the client's trace (or a new one when its traceparent
        is missing or invalid) with a new span of the gateway's, forwarded to the function
        as its `traceparent` and `tracestate`."""
        if self.trace is None:
            caller, _ = from_headers(self.traceparent, self.tracestate)
            self.trace = caller.child()
            self.forwarded += self.trace.headers()
        return self.trace

    def get(self, name: str) -> str | None:
        """A forwarded header's first value; `name` lower-cased."""
        for key, value in self.forwarded:
            if key == name:
                return value
        return None


class TracedSend:
    """A `send` that answers with the call's traceparent and remembers the status sent, for
    endpoints that answer from several places (the model protocols)."""

    __slots__ = ("_header", "_send", "status")

    def __init__(self, send: Send, trace: TraceContext) -> None:
        self._send = send
        self._header = (b"traceparent", trace.traceparent().encode())
        self.status = 0  # until the answer starts

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), self._header]
        await self._send(message)


async def read_body(receive: Receive, limit: int = MAX_BODY) -> bytes:
    """The whole request body; PayloadTooLarge as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"request body is larger than {_size(limit)}",
                "send large inputs by reference (a URL), or raise the function's max_body "
                "or the gateway's NUVEM_MAX_BODY",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _size(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit} bytes"


def render_error(error: NuvemError) -> tuple[int, RawHeaders, bytes]:
    """An error's answer: its status, JSON body, Retry-After, for 401 the realm, and for
    405 the methods the path takes (Allow)."""
    headers = [_JSON]
    if isinstance(error, MethodNotAllowed):
        headers.append((b"allow", ", ".join(error.allow).encode()))
    if error.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(error.retry_after))).encode()))
    if error.status == 401:
        headers.append((b"www-authenticate", AUTHENTICATE))
    return error.status, headers, json.dumps(error.payload()).encode()


def json_body(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def respond(send: Send, status: int, body: bytes, headers: RawHeaders) -> None:
    """Send the answer; `headers` is the caller's list, to which Content-Length is added."""
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, payload: Any) -> None:
    await respond(send, status, json_body(payload), [_JSON])


async def respond_error(send: Send, error: NuvemError) -> None:
    status, headers, body = render_error(error)
    await respond(send, status, body, headers)
