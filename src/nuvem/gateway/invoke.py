"""The hot path: `/function/{name}[/{path}]` served as raw ASGI.

Calls skip the web framework's routing and middleware: parse once, authenticate with a
dictionary lookup, hand the raw body to a replica, answer. The OpenAPI document still
describes these routes (see openapi.py).
"""

from __future__ import annotations

import time

from nuvem.control.controller import Controller
from nuvem.errors import NuvemError
from nuvem.gateway import asgi
from nuvem.gateway.access_log import AccessEntry, AccessLog, key_id, spec_version
from nuvem.gateway.asgi import RequestHeaders, read_body, render_error
from nuvem.gateway.auth import Authenticator
from nuvem.gateway.openfaas_forward import upstream_headers
from nuvem.metrics.registry import Metrics
from nuvem.routing.invocation import invoke
from nuvem.runtime.protocol import CallMeta

PREFIX = "/function/"


class FunctionEndpoint:
    def __init__(
        self,
        controller: Controller,
        auth: Authenticator,
        metrics: Metrics,
        max_body: int = asgi.MAX_BODY,
        access: AccessLog | None = None,
    ) -> None:
        self.controller = controller
        self.auth = auth
        self.metrics = metrics
        self.max_body = max_body
        self.access = access

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        started_wall = time.time()
        started = time.perf_counter()
        name, _, extra = scope["path"][len(PREFIX) :].partition("/")
        request = RequestHeaders(scope)
        call_id = request.ensure_call_id()
        trace = request.ensure_trace()
        called = False
        meta: CallMeta | None = None
        try:
            self.auth.check_invoke(request.authorization, request.api_key, name)
            deployment = self.controller.get(name)
            body = await read_body(receive, deployment.spec.max_body or self.max_body)
            forwarded = request.forwarded
            if deployment.spec.serves_http:  # an image: what OpenFaaS's gateway sends it
                forwarded = upstream_headers(forwarded, scope, started_wall)
            meta = CallMeta(
                scope["method"],
                "/" + extra,
                scope["query_string"].decode("latin-1"),
                forwarded,
            )
            called = True
            code, headers, payload = await invoke(
                deployment, meta, body, self.metrics, started=started
            )
        except NuvemError as error:
            code, headers, payload = render_error(error)
            if not called and name in self.controller.deployments:
                # Refused before the call (credentials, rate limit, body size): /function
                # has always counted these in the invocation metrics too.
                self.metrics.observe_call(name, code, time.perf_counter() - started)
        duration = time.perf_counter() - started
        headers += [
            (b"content-length", str(len(payload)).encode()),
            (b"x-call-id", call_id.encode("latin-1")),
            (b"traceparent", trace.traceparent().encode()),
            (b"x-start-time", str(int(started_wall * 1e9)).encode()),
            (b"x-duration-seconds", f"{duration:.6f}".encode()),
        ]
        if self.access is not None:
            deployment_now = self.controller.deployments.get(name)
            self.access.write(
                AccessEntry(
                    time=started_wall,
                    function=name,
                    version=spec_version(deployment_now.spec) if deployment_now else None,
                    status=code,
                    duration_ms=duration * 1e3,
                    call_id=call_id,
                    trace_id=trace.trace_id,
                    key_id=key_id(request.authorization, request.api_key),
                    replica=(meta.replica or None) if meta is not None else None,
                    method=scope["method"],
                    path=scope["path"],
                )
            )
        # Sent here rather than through asgi.respond: one coroutine less on the hottest path.
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
