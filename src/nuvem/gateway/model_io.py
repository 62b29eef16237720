"""Shared plumbing of the model protocols (V2, TorchServe) served as raw ASGI: the caller's
credentials, bounded and decompressed bodies, JSON answers, and one call to a model's
function with its metrics."""

from __future__ import annotations

import gzip
import json
import os
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nuvem.control.deployment import Deployment
from nuvem.errors import BadRequest, NuvemError, PayloadTooLarge
from nuvem.gateway.invoke import MAX_BODY, Scope, Send, error_response_parts
from nuvem.metrics.registry import Metrics
from nuvem.routing.dispatch import dispatch
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import CallResult

RawHeaders = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Caller:
    """What the gateway reads from a request's headers once."""

    authorization: str | None = None
    api_key: str | None = None
    call_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # the rest, lower-cased names

    @classmethod
    def of(cls, scope: Scope) -> Caller:
        caller = cls()
        for raw_key, raw_value in scope["headers"]:
            value = raw_value.decode("latin-1")
            if raw_key == b"authorization":
                caller.authorization = value
            elif raw_key == b"x-api-key":
                caller.api_key = value
            else:
                caller.headers[raw_key.decode("latin-1")] = value
        caller.call_id = caller.headers.get("x-call-id") or os.urandom(16).hex()
        return caller


def decompress(body: bytes, encoding: str | None, limit: int = MAX_BODY) -> bytes:
    """A gzip or deflate body (Content-Encoding), inflated to at most `limit` bytes."""
    if not encoding or encoding.strip().lower() == "identity":
        return body
    kind = encoding.strip().lower()
    if kind not in ("gzip", "deflate"):
        raise BadRequest(
            f"unsupported Content-Encoding {encoding!r}", "send gzip, deflate or no encoding"
        )
    # gzip: wbits 16+15; deflate is zlib-wrapped in HTTP, though some clients send it raw.
    attempts = (31,) if kind == "gzip" else (15, -15)
    for wbits in attempts:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(data) > limit:
            raise PayloadTooLarge(
                f"the {kind} body inflates to more than {limit // 2**20} MiB",
                "send fewer or smaller inputs per request",
            )
        return data
    raise BadRequest(f"the body is not valid {kind} data", "compress it again, or send it plain")


def compress(body: bytes, accept_encoding: str | None) -> tuple[bytes, str | None]:
    """The body compressed as the client accepts (gzip preferred), and the encoding used."""
    if not accept_encoding or len(body) < 256:
        return body, None
    accepted = {part.split(";")[0].strip().lower() for part in accept_encoding.split(",")}
    if "gzip" in accepted:
        return gzip.compress(body, compresslevel=1), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body, 1), "deflate"
    return body, None


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    accept_encoding: str | None = None,
) -> None:
    body, encoding = compress(body, accept_encoding)
    out = list(headers)
    if encoding is not None:
        out.append((b"content-encoding", encoding.encode()))
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


def json_body(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


async def respond_json(
    send: Send, status: int, payload: Any, *, accept_encoding: str | None = None
) -> None:
    await respond(
        send,
        status,
        json_body(payload),
        [(b"content-type", b"application/json")],
        accept_encoding=accept_encoding,
    )


async def respond_error(send: Send, error: NuvemError) -> None:
    status, headers, body = error_response_parts(error)
    await respond(send, status, body, headers)


async def call_function(
    deployment: Deployment, metrics: Metrics, meta: CallMeta, body: bytes
) -> CallResult:
    """One call to the model's function, counted in its metrics like /function calls."""
    started = time.perf_counter()
    code = 500
    deployment.count_call()
    try:
        result = await dispatch(deployment, meta, body)
        code = result.status
        return result
    except NuvemError as error:
        code = error.status
        raise
    finally:
        if not deployment.removed:
            metrics.observe_call(deployment.name, code, time.perf_counter() - started)


def result_error(result: CallResult) -> str:
    """The error a replica answered with, as text."""
    try:
        payload = json.loads(result.body)
    except ValueError:
        return result.body.decode("utf-8", "replace")[:500]
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return str(payload)[:500]
