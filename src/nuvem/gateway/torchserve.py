"""TorchServe's inference API: `POST /predictions/{model}[/{version}]` and `GET /ping`.

The body is an image, raw or as the multipart field `data`; the answer is `{label:
probability}` for the top classes, as TorchServe's image classifier gives. The gateway only
routes: the replica decodes the image (off the gateway's event loop) and batches it.
"""

from __future__ import annotations

from nuvem.control.controller import Controller
from nuvem.errors import BadRequest, NuvemError
from nuvem.gateway.auth import Authenticator
from nuvem.gateway.invoke import Receive, Scope, Send, read_body
from nuvem.gateway.model_index import ModelIndex
from nuvem.gateway.model_io import Caller, call_function, respond, respond_error
from nuvem.metrics.registry import Metrics
from nuvem.runtime.protocol import CallMeta

PREFIX = "/predictions/"
PING = "/ping"
_PASSED = ("content-type", "x-call-id")
_RESPONSE_DROP = {"content-length", "connection", "transfer-encoding", "keep-alive"}


def handles(path: str) -> bool:
    return path.startswith(PREFIX) or path == PING


class TorchServeEndpoint:
    def __init__(self, controller: Controller, auth: Authenticator, metrics: Metrics) -> None:
        self.index = ModelIndex(controller)
        self.auth = auth
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["path"] == PING:
                await respond(
                    send,
                    200,
                    b'{"status":"Healthy"}',
                    [(b"content-type", b"application/json")],
                )
                return
            await self._predict(scope, receive, send)
        except NuvemError as error:
            await respond_error(send, error)

    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("POST", "PUT"):
            raise BadRequest(
                f"{scope['method']} is not allowed on {scope['path']}",
                "POST the image to /predictions/{model}",
            )
        parts = scope["path"][len(PREFIX) :].strip("/").split("/")
        if not parts[0] or len(parts) > 2:
            raise BadRequest(
                f"{scope['path']} is not a prediction path",
                "use /predictions/{model} or /predictions/{model}/{version}",
            )
        version, deployment = self.index.resolve(parts[0], parts[1] if len(parts) > 1 else None)
        caller = Caller.of(scope)
        self.auth.check_invoke(caller.authorization, caller.api_key, deployment.name)
        body = await read_body(receive)
        headers = [(k, caller.headers[k]) for k in _PASSED if k in caller.headers]
        if "x-call-id" not in caller.headers:
            headers.append(("x-call-id", caller.call_id))
        meta = CallMeta("POST", "/predictions", "", headers)
        result = await call_function(deployment, self.metrics, meta, body)
        out = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in result.headers
            if k.lower() not in _RESPONSE_DROP
        ]
        out += [(b"x-call-id", caller.call_id.encode()), (b"x-model-version", version.encode())]
        await respond(send, result.status, result.body, out)
