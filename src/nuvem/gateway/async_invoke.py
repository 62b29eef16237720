"""`/async-function/{name}[/{path}]` as raw ASGI: store the job, answer 202 at once.

Nothing runs before the answer: the job is durable in the store when the client reads its
X-Call-Id, and the runner picks it up from there (see jobs/runner.py).
"""

from __future__ import annotations

import json
import time

from nuvem import security
from nuvem.control.controller import Controller
from nuvem.errors import BadRequest, NuvemError
from nuvem.gateway import asgi
from nuvem.gateway.access_log import AccessEntry, AccessLog, key_id, spec_version
from nuvem.gateway.asgi import RequestHeaders, read_body, render_error, respond
from nuvem.gateway.auth import Authenticator
from nuvem.gateway.openfaas_forward import upstream_headers
from nuvem.jobs.service import JobService
from nuvem.stores.job import JobRequest

ASYNC_PREFIX = "/async-function/"
# Our own control headers stop at the gateway too (the job's id is its call id).
_CONTROL = frozenset({"x-callback-url", "idempotency-key", "x-call-id"})
MAX_IDEMPOTENCY_KEY = 200


class AsyncFunctionEndpoint:
    def __init__(
        self,
        controller: Controller,
        auth: Authenticator,
        jobs: JobService,
        max_body: int = asgi.MAX_BODY,
        access: AccessLog | None = None,
    ) -> None:
        self.controller = controller
        self.auth = auth
        self.jobs = jobs
        self.max_body = max_body
        self.access = access

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        started_wall, started = time.time(), time.perf_counter()
        name, _, extra = scope["path"][len(ASYNC_PREFIX) :].partition("/")
        caller = RequestHeaders(scope)
        # Stored with the job (its request's headers): every attempt and the callback carry
        # this trace, each as a span of its own (jobs/runner.py).
        trace = caller.ensure_trace()
        call_id: str | None = None
        authorization, api_key = caller.authorization, caller.api_key
        callback_header = caller.get("x-callback-url")
        callback_url = (callback_header or "").strip()
        idempotency_key = (caller.get("idempotency-key") or "").strip()
        try:
            self.auth.check_invoke(authorization, api_key, name)
            spec = self.controller.get(name).spec
            if callback_header is not None and not callback_url:
                # Not taken for "no callback": a client that meant one would never hear back.
                raise BadRequest(
                    "X-Callback-Url is empty",
                    "give the URL to POST the result to, or leave the header out",
                )
            body = await read_body(receive, spec.max_body or self.max_body)
            scoped_key = None
            if idempotency_key:
                if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
                    raise BadRequest(
                        f"Idempotency-Key is {len(idempotency_key)} characters long",
                        f"use at most {MAX_IDEMPOTENCY_KEY}, e.g. a UUID",
                    )
                # Scoped by caller and function: one client's key never returns another's job.
                scoped_key = f"{_caller(authorization, api_key)}/{name}/{idempotency_key}"
            forwarded = [(k, v) for k, v in caller.forwarded if k not in _CONTROL]
            if spec.serves_http:  # an image: what OpenFaaS's gateway sends it
                forwarded = upstream_headers(forwarded, scope, started_wall)
            request = JobRequest(
                scope["method"],
                "/" + extra,
                scope["query_string"].decode("latin-1"),
                tuple(forwarded),
                body,
            )
            job, created = await self.jobs.submit(spec, request, callback_url or None, scoped_key)
            call_id = job.id
            status = 202
            payload = json.dumps(
                {"id": job.id, "function": job.function, "state": job.state.value}
            ).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"x-call-id", job.id.encode()),
                (b"location", f"/system/jobs/{job.id}".encode()),
            ]
            if not created:
                headers.append((b"idempotent-replayed", b"true"))
        except NuvemError as error:
            status, headers, payload = render_error(error)
        headers.append((b"traceparent", trace.traceparent().encode()))
        await respond(send, status, payload, headers)
        if self.access is not None:
            deployment = self.controller.deployments.get(name)
            self.access.write(
                AccessEntry(
                    time=started_wall,
                    function=name,
                    version=spec_version(deployment.spec) if deployment else None,
                    status=status,
                    duration_ms=(time.perf_counter() - started) * 1e3,
                    call_id=call_id or caller.call_id or "",
                    trace_id=trace.trace_id,
                    key_id=key_id(authorization, api_key),
                    replica=None,  # the job runs later, on a replica of the runner's choosing
                    method=scope["method"],
                    path=scope["path"],
                )
            )


def _caller(authorization: str | None, api_key: str | None) -> str:
    """Who is asking, for scoping idempotency keys: an API key's id, or the admin."""
    token = api_key
    if token is None and authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    parsed = security.parse_api_key(token) if token else None
    return f"key:{parsed[0]}" if parsed else "admin"
