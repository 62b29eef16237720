"""The Open Inference Protocol (KServe V2) REST API under /v2, as Triton serves it.

Health (`/v2/health/live|ready`, `.../ready`) answers with its status code and a JSON body,
and is open like /healthz. Model metadata and inference need an API key for the model's
function. Inputs cross to the replica as raw bytes in a tensor envelope; the answer comes back
the same way and is written as JSON, or binary with the binary tensor extension.
"""

from __future__ import annotations

import json
import time
from typing import Any

import nuvem
from nuvem.control.deployment import Deployment
from nuvem.errors import BadRequest, NotFound, NuvemError, Unavailable
from nuvem.gateway import asgi
from nuvem.gateway.access_log import AccessLog, CallNote
from nuvem.gateway.asgi import (
    RequestHeaders,
    TracedSend,
    read_body,
    respond,
    respond_error,
    respond_json,
)
from nuvem.gateway.content_coding import compress, decompress
from nuvem.gateway.model_index import ModelIndex
from nuvem.gateway.oip_codec import decode_request, encode_response
from nuvem.gateway.services import Services
from nuvem.routing.invocation import invoke
from nuvem.runtime import tensors
from nuvem.runtime.protocol import CallMeta

ROOT = "/v2"
_TENSORS = tensors.CONTENT_TYPE.encode()
EXTENSIONS = ["binary_tensor_data", "classification"]
INFER_PATH = "/v2/infer"  # the paths the model handler answers (models/handler.py)
METADATA_PATH = "/v2/metadata"
HEADER_LENGTH = "inference-header-content-length"


def handles(path: str) -> bool:
    return path == ROOT or path.startswith(ROOT + "/")


class OipEndpoint:
    def __init__(self, platform: Services, access: AccessLog | None = None) -> None:
        self.platform = platform
        self.access = access
        self.index = ModelIndex(platform.controller)
        # Metadata comes from a replica (only it has loaded the model file); kept per
        # function and spec, so an update asks again.
        self._metadata: dict[tuple[str, str], dict[str, Any]] = {}

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        started_wall, started = time.time(), time.perf_counter()
        caller = RequestHeaders(scope)
        trace = caller.ensure_trace()
        traced = TracedSend(send, trace)
        note = CallNote()
        try:
            await self._route(scope, receive, traced, caller, note)
        except NuvemError as error:
            await respond_error(traced, error)
        if self.access is not None and note.function:
            self.access.write_noted(
                scope, caller, trace.trace_id, traced.status, note, started_wall, started
            )

    async def _route(
        self,
        scope: asgi.Scope,
        receive: asgi.Receive,
        send: asgi.Send,
        caller: RequestHeaders,
        note: CallNote,
    ) -> None:
        parts = scope["path"].rstrip("/").split("/")[2:]
        method = scope["method"]
        if not parts:
            self._check_health_access(caller)
            await respond_json(
                send,
                200,
                {"name": "nuvem", "version": nuvem.__version__, "extensions": EXTENSIONS},
            )
            return
        if parts[0] == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
            self._check_health_access(caller)
            await self._health(send, parts[1])
            return
        if parts[0] != "models" or len(parts) < 2:
            raise NotFound(
                f"{scope['path']} is not an Open Inference Protocol path",
                "use /v2/health/ready, /v2/models/{name} or /v2/models/{name}/infer",
            )
        name, rest = parts[1], parts[2:]
        version = None
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        action = rest[0] if rest else ""
        if action in ("", "infer"):  # the calls of a model; readiness is a health check
            note.function, note.version = name, version
        if len(rest) > 1 or action not in ("", "ready", "infer"):
            raise NotFound(
                f"{scope['path']} is not an Open Inference Protocol path",
                "use /v2/models/{name}[/versions/{v}][/ready|/infer]",
            )
        try:
            resolved, deployment = self.index.resolve(name, version)
        except NotFound:
            # Only a caller who may ask learns which models and versions exist.
            if action == "ready":
                self._check_health_access(caller)
            else:
                self.platform.auth.check_caller(caller.authorization, caller.api_key)
            raise
        if note.function:
            note.function, note.version = deployment.name, resolved
        if action == "ready":
            self._check_health_access(caller)
            ready = bool(deployment.ready())
            body = {"name": name, "version": resolved, "ready": ready}
            await respond_json(send, 200 if ready else 503, body)
            return
        called = f"model {name!r} version {resolved}" if name != deployment.name else None
        self.platform.auth.check_invoke(
            caller.authorization, caller.api_key, deployment.name, called
        )
        if action == "":
            if method != "GET":
                raise BadRequest(f"{method} is not allowed here", "GET model metadata")
            described = await self._model_metadata(name, deployment, caller, note)
            await respond_json(send, 200, described)
            return
        if method != "POST":
            raise BadRequest(f"{method} is not allowed on infer", "POST the inference request")
        await self._infer(receive, send, caller, name, resolved, deployment, note)

    def _check_health_access(self, caller: RequestHeaders) -> None:
        if not self.platform.settings.open_health:
            self.platform.auth.check_admin(caller.authorization)

    async def _health(self, send: asgi.Send, kind: str) -> None:
        if kind == "live":
            await respond_json(send, 200, {"live": True})
            return
        waiting = sorted(
            name
            for name, versions in self.index.models().items()
            if any(not d.ready() for d in versions.values())
        )
        if waiting:
            body = {
                "ready": False,
                "error": f"models without a ready replica: {', '.join(waiting)}",
            }
            await respond_json(send, 503, body)
            return
        await respond_json(send, 200, {"ready": True})

    async def _model_metadata(
        self, name: str, deployment: Deployment, caller: RequestHeaders, note: CallNote
    ) -> dict[str, Any]:
        key = (deployment.name, deployment.spec.fingerprint())
        described = self._metadata.get(key)
        if described is None:
            headers = [("x-call-id", caller.ensure_call_id()), *caller.ensure_trace().headers()]
            meta = CallMeta("GET", METADATA_PATH, "", headers)
            try:
                status, _, body = await invoke(deployment, meta, b"", self.platform.metrics)
            finally:
                note.replica = meta.replica or None
            if status != 200:
                raise Unavailable(f"model {name!r} cannot describe itself: {answer_error(body)}")
            described = json.loads(body)
            self._metadata[key] = described
        versions = sorted(self.index.versions(name))
        return {"name": name, "versions": versions, **described}

    async def _infer(
        self,
        receive: asgi.Receive,
        send: asgi.Send,
        caller: RequestHeaders,
        name: str,
        version: str,
        deployment: Deployment,
        note: CallNote,
    ) -> None:
        limit = deployment.spec.max_body or self.platform.settings.max_body
        body = decompress(await read_body(receive, limit), caller.get("content-encoding"), limit)
        request = decode_request(body, caller.get(HEADER_LENGTH))
        call_id = caller.ensure_call_id()
        sent = [("content-type", tensors.CONTENT_TYPE), ("x-call-id", call_id)]
        meta = CallMeta("POST", INFER_PATH, "", sent + caller.ensure_trace().headers())
        try:
            status, answered, result = await invoke(
                deployment, meta, request.envelope(), self.platform.metrics
            )
        finally:
            note.replica = meta.replica or None
        content_type = next((v for k, v in answered if k == b"content-type"), b"")
        if status != 200 or content_type != _TENSORS:
            status = status if status >= 400 else 500
            await respond_json(send, status, {"error": answer_error(result)})
            return
        outputs, _ = tensors.decode(result)
        payload, header_length = encode_response(name, version, request, outputs)
        headers = [(b"x-call-id", call_id.encode("latin-1"))]
        if header_length is None:
            headers.append((b"content-type", b"application/json"))
        else:
            headers += [
                (b"content-type", b"application/octet-stream"),
                (HEADER_LENGTH.encode(), str(header_length).encode()),
            ]
        payload, encoding = compress(payload, caller.get("accept-encoding"))
        if encoding is not None:
            headers.append((b"content-encoding", encoding.encode()))
        await respond(send, 200, payload, headers)


def answer_error(body: bytes) -> str:
    """The error a replica answered with, as text."""
    try:
        payload = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:500]
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return str(payload)[:500]
