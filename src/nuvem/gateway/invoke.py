"""The hot path: `/function/{name}[/{path}]` served as raw ASGI.

Calls skip the web framework's routing and middleware: parse once, authenticate with a
dictionary lookup, hand the raw body to a replica, answer. The OpenAPI document still
describes these routes (see openapi.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from nuvem.control.controller import Controller
from nuvem.errors import FunctionFailed, NuvemError, PayloadTooLarge
from nuvem.gateway.auth import Authenticator
from nuvem.metrics.registry import Metrics
from nuvem.routing.dispatch import dispatch
from nuvem.runtime.protocol import CallMeta

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "/function/"
MAX_BODY = 64 * 2**20
# Credentials stop at the gateway; hop-by-hop headers are the gateway's own business.
_REQUEST_DROP = {b"authorization", b"x-api-key", b"connection", b"keep-alive", b"transfer-encoding"}
_RESPONSE_DROP = {b"content-length", b"connection", b"transfer-encoding", b"keep-alive"}


def error_response_parts(error: NuvemError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(error.payload()).encode()
    headers = [(b"content-type", b"application/json")]
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    if error.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="nuvem", Basic realm="nuvem"'))
    return error.status, headers, body


def _checked(
    function: str, status: int, headers: list[tuple[str, str]]
) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The handler's status and headers, as HTTP allows them, or a 500 that says why not."""
    if not 100 <= status <= 599:
        raise FunctionFailed(
            f"function {function!r} answered with status {status}, which HTTP does not have",
            "return a status between 100 and 599",
        )
    encoded = []
    for key, value in headers:
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
        if raw_key not in _RESPONSE_DROP:
            encoded.append((raw_key, raw_value))
    return status, encoded


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
                f"request body is larger than {limit // 2**20} MiB",
                "send large inputs by reference (a URL) or raise the gateway's max body",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class FunctionEndpoint:
    def __init__(
        self,
        controller: Controller,
        auth: Authenticator,
        metrics: Metrics,
        max_body: int = MAX_BODY,
    ) -> None:
        self.controller = controller
        self.auth = auth
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started_wall = time.time()
        started = time.perf_counter()
        name, _, extra = scope["path"][len(PREFIX) :].partition("/")
        authorization = api_key = call_id = None
        forwarded: list[tuple[str, str]] = []
        # ASGI servers give header names lower-cased, as bytes: compare them as they come.
        for raw_key, raw_value in scope["headers"]:
            if raw_key in _REQUEST_DROP:
                if raw_key == b"authorization":
                    authorization = raw_value.decode("latin-1")
                elif raw_key == b"x-api-key":
                    api_key = raw_value.decode("latin-1")
                continue
            value = raw_value.decode("latin-1")
            if raw_key == b"x-call-id":
                call_id = value
            forwarded.append((raw_key.decode("latin-1"), value))
        if call_id is None:
            call_id = os.urandom(16).hex()
            forwarded.append(("x-call-id", call_id))
        code = 500
        try:
            self.auth.check_invoke(authorization, api_key, name)
            deployment = self.controller.get(name)
            body = await read_body(receive, self.max_body)
            meta = CallMeta(
                scope["method"], "/" + extra, scope["query_string"].decode("latin-1"), forwarded
            )
            deployment.count_call()
            result = await dispatch(deployment, meta, body)
            code, headers = _checked(name, result.status, result.headers)
            payload = result.body
        except NuvemError as error:
            code, headers, payload = error_response_parts(error)
        duration = time.perf_counter() - started
        headers += [
            (b"content-length", str(len(payload)).encode()),
            (b"x-call-id", call_id.encode("latin-1")),
            (b"x-start-time", str(int(started_wall * 1e9)).encode()),
            (b"x-duration-seconds", f"{duration:.6f}".encode()),
        ]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        if name in self.controller.deployments:
            self.metrics.observe_call(name, code, duration)
