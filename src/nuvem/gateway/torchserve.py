"""TorchServe's inference API: `POST /predictions/{model}[/{version}]` and `GET /ping`.

The body is an image, raw or as the multipart field `data`; the answer is `{label:
probability}` for the top classes, as TorchServe's image classifier gives. The gateway only
routes: the replica decodes the image (off the gateway's event loop) and batches it.
"""

from __future__ import annotations

import time

from nuvem.control.controller import Controller
from nuvem.errors import BadRequest, NotFound, NuvemError
from nuvem.gateway import asgi
from nuvem.gateway.access_log import AccessLog, CallNote
from nuvem.gateway.asgi import RequestHeaders, TracedSend, read_body, respond, respond_error
from nuvem.gateway.auth import Authenticator
from nuvem.gateway.model_index import ModelIndex
from nuvem.metrics.registry import Metrics
from nuvem.routing.invocation import invoke
from nuvem.runtime.protocol import CallMeta

PREFIX = "/predictions/"
PING = "/ping"


def handles(path: str) -> bool:
    return path.startswith(PREFIX) or path == PING


class TorchServeEndpoint:
    def __init__(
        self,
        controller: Controller,
        auth: Authenticator,
        metrics: Metrics,
        access: AccessLog | None = None,
    ) -> None:
        self.index = ModelIndex(controller)
        self.auth = auth
        self.metrics = metrics
        self.access = access

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["path"] == PING:
            await respond(
                send, 200, b'{"status":"Healthy"}', [(b"content-type", b"application/json")]
            )
            return
        started_wall, started = time.time(), time.perf_counter()
        caller = RequestHeaders(scope)
        trace = caller.ensure_trace()
        traced = TracedSend(send, trace)
        note = CallNote()
        try:
            await self._predict(scope, receive, traced, caller, note)
        except NuvemError as error:
            await respond_error(traced, error)
        if self.access is not None:
            self.access.write_noted(
                scope, caller, trace.trace_id, traced.status, note, started_wall, started
            )

    async def _predict(
        self,
        scope: asgi.Scope,
        receive: asgi.Receive,
        send: asgi.Send,
        caller: RequestHeaders,
        note: CallNote,
    ) -> None:
        if scope["method"] not in ("POST", "PUT"):
            raise BadRequest(
                f"{scope['method']} is not allowed on {scope['path']}",
                "POST the image to /predictions/{model}",
            )
        parts = scope["path"][len(PREFIX) :].strip("/").split("/")
        note.function = parts[0]
        if not parts[0] or len(parts) > 2:
            raise BadRequest(
                f"{scope['path']} is not a prediction path",
                "use /predictions/{model} or /predictions/{model}/{version}",
            )
        try:
            version, deployment = self.index.resolve(parts[0], parts[1] if len(parts) > 1 else None)
        except NotFound:
            # Only a caller who may ask learns which models and versions exist.
            self.auth.check_caller(caller.authorization, caller.api_key)
            raise
        note.function, note.version = deployment.name, version
        called = f"model {parts[0]!r} version {version}" if parts[0] != deployment.name else None
        self.auth.check_invoke(caller.authorization, caller.api_key, deployment.name, called)
        body = await read_body(receive, deployment.spec.max_body or asgi.MAX_BODY)
        call_id = caller.ensure_call_id()
        # Only what the model handler reads: the image's type, and the call's id.
        headers = [(k, v) for k, v in caller.forwarded if k == "content-type"]
        headers.append(("x-call-id", call_id))
        headers += caller.ensure_trace().headers()
        meta = CallMeta("POST", "/predictions", "", headers)
        try:
            status, headers_out, answered = await invoke(deployment, meta, body, self.metrics)
        finally:
            note.replica = meta.replica or None
        headers_out += [(b"x-call-id", call_id.encode()), (b"x-model-version", version.encode())]
        await respond(send, status, answered, headers_out)
