"""The Open Inference Protocol (KServe V2) REST API under /v2, as Triton serves it.

Health (`/v2/health/live|ready`, `.../ready`) answers with its status code and a JSON body,
and is open like /healthz. Model metadata and inference need an API key for the model's
function. Inputs cross to the replica as raw bytes in a tensor envelope; the answer comes back
the same way and is written as JSON, or binary with the binary tensor extension.
"""

from __future__ import annotations

import json
from typing import Any

import nuvem
from nuvem.control.deployment import Deployment
from nuvem.errors import BadRequest, NotFound, NuvemError, Unavailable
from nuvem.gateway.invoke import Receive, Scope, Send, read_body
from nuvem.gateway.model_index import ModelIndex
from nuvem.gateway.model_io import (
    Caller,
    call_function,
    decompress,
    respond,
    respond_error,
    respond_json,
    result_error,
)
from nuvem.gateway.oip_codec import decode_request, encode_response
from nuvem.gateway.services import Services
from nuvem.runtime import tensors
from nuvem.runtime.protocol import CallMeta

ROOT = "/v2"
EXTENSIONS = ["binary_tensor_data", "classification"]
INFER_PATH = "/v2/infer"  # the paths the model handler answers (models/handler.py)
METADATA_PATH = "/v2/metadata"
HEADER_LENGTH = "inference-header-content-length"


def handles(path: str) -> bool:
    return path == ROOT or path.startswith(ROOT + "/")


class OipEndpoint:
    def __init__(self, platform: Services) -> None:
        self.platform = platform
        self.index = ModelIndex(platform.controller)
        # Metadata comes from a replica (only it has loaded the model file); kept per
        # function and spec, so an update asks again.
        self._metadata: dict[tuple[str, str], dict[str, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = Caller.of(scope)
        try:
            await self._route(scope, receive, send, caller)
        except NuvemError as error:
            await respond_error(send, error)

    async def _route(self, scope: Scope, receive: Receive, send: Send, caller: Caller) -> None:
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
        if len(rest) > 1 or action not in ("", "ready", "infer"):
            raise NotFound(
                f"{scope['path']} is not an Open Inference Protocol path",
                "use /v2/models/{name}[/versions/{v}][/ready|/infer]",
            )
        resolved, deployment = self.index.resolve(name, version)
        if action == "ready":
            self._check_health_access(caller)
            ready = bool(deployment.ready())
            body = {"name": name, "version": resolved, "ready": ready}
            await respond_json(send, 200 if ready else 503, body)
            return
        self.platform.auth.check_invoke(caller.authorization, caller.api_key, deployment.name)
        if action == "":
            if method != "GET":
                raise BadRequest(f"{method} is not allowed here", "GET model metadata")
            await respond_json(send, 200, await self._model_metadata(name, deployment, caller))
            return
        if method != "POST":
            raise BadRequest(f"{method} is not allowed on infer", "POST the inference request")
        await self._infer(receive, send, caller, name, resolved, deployment)

    def _check_health_access(self, caller: Caller) -> None:
        if not self.platform.settings.open_health:
            self.platform.auth.check_admin(caller.authorization)

    async def _health(self, send: Send, kind: str) -> None:
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
        self, name: str, deployment: Deployment, caller: Caller
    ) -> dict[str, Any]:
        key = (deployment.name, deployment.spec.fingerprint())
        described = self._metadata.get(key)
        if described is None:
            meta = CallMeta("GET", METADATA_PATH, "", [("x-call-id", caller.call_id)])
            result = await call_function(deployment, self.platform.metrics, meta, b"")
            if result.status != 200:
                raise Unavailable(f"model {name!r} cannot describe itself: {result_error(result)}")
            described = json.loads(result.body)
            self._metadata[key] = described
        versions = sorted(self.index.versions(name))
        return {"name": name, "versions": versions, **described}

    async def _infer(
        self,
        receive: Receive,
        send: Send,
        caller: Caller,
        name: str,
        version: str,
        deployment: Deployment,
    ) -> None:
        body = decompress(await read_body(receive), caller.headers.get("content-encoding"))
        request = decode_request(body, caller.headers.get(HEADER_LENGTH))
        meta = CallMeta(
            "POST",
            INFER_PATH,
            "",
            [("content-type", tensors.CONTENT_TYPE), ("x-call-id", caller.call_id)],
        )
        result = await call_function(deployment, self.platform.metrics, meta, request.envelope())
        content_type = next((v for k, v in result.headers if k.lower() == "content-type"), "")
        if result.status != 200 or content_type != tensors.CONTENT_TYPE:
            status = result.status if result.status >= 400 else 500
            await respond_json(send, status, {"error": result_error(result)})
            return
        outputs, _ = tensors.decode(result.body)
        payload, header_length = encode_response(name, version, request, outputs)
        headers = [(b"x-call-id", caller.call_id.encode("latin-1"))]
        if header_length is None:
            headers.append((b"content-type", b"application/json"))
        else:
            headers += [
                (b"content-type", b"application/octet-stream"),
                (HEADER_LENGTH.encode(), str(header_length).encode()),
            ]
        await respond(
            send, 200, payload, headers, accept_encoding=caller.headers.get("accept-encoding")
        )
