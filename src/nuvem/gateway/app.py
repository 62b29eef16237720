"""The gateway's ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

import nuvem
from nuvem.errors import NuvemError
from nuvem.gateway import (
    bundles_api,
    jobs_api,
    nodes_api,
    pools_api,
    scaling_api,
    stack_api,
    system_api,
)
from nuvem.gateway.access_log import AccessLog, access_format, access_log
from nuvem.gateway.asgi import Receive, Scope, Send, render_error, respond_error
from nuvem.gateway.async_invoke import ASYNC_PREFIX, AsyncFunctionEndpoint
from nuvem.gateway.async_openapi import ASYNC_METHODS
from nuvem.gateway.guard import Guard
from nuvem.gateway.invoke import PREFIX, FunctionEndpoint
from nuvem.gateway.line_sinks import LineSink
from nuvem.gateway.methods import MethodTable, allow_header, not_allowed
from nuvem.gateway.openapi import FUNCTION_METHODS, add_function_routes
from nuvem.gateway.services import Services
from nuvem.gateway.serving import ModelProtocols
from nuvem.gateway.ui import routes as ui


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "invalid request: " + "; ".join(problems)


def build_api(
    platform: Services, *, manage_lifespan: bool, access: AccessLog | None = None
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifespan:
            await platform.start()
        try:
            async with ui.running(sampler, platform):
                yield
        finally:
            try:
                if manage_lifespan:
                    await platform.stop()
            finally:
                # Last: the server answered every call before shutting the lifespan down,
                # so every access line is queued by now.
                if access is not None:
                    access.close()

    api = FastAPI(
        title="nuvem gateway",
        version=nuvem.__version__,
        description="OpenFaaS-compatible gateway of the nuvem serverless platform.",
        lifespan=lifespan,
    )
    api.state.platform = platform

    @api.exception_handler(NuvemError)
    async def nuvem_error(request: Request, exc: NuvemError) -> Response:
        status, headers, body = render_error(exc)
        named = {key.decode("latin-1"): value.decode("latin-1") for key, value in headers}
        return Response(body, status_code=status, headers=named)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _validation_message(exc)}, status_code=400)

    @api.get("/healthz", tags=["health"])
    def healthz(request: Request) -> dict[str, str]:
        if not platform.settings.open_health:
            platform.auth.check_admin(request.headers.get("authorization"))
        return {"status": "ok"}

    @api.get("/metrics", tags=["health"], response_class=Response)
    def metrics(request: Request) -> Response:
        if not platform.settings.open_metrics:
            platform.auth.check_admin(request.headers.get("authorization"))
        return Response(generate_latest(platform.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    api.include_router(system_api.router)
    api.include_router(jobs_api.router)
    api.include_router(scaling_api.router)
    api.include_router(nodes_api.router)
    api.include_router(pools_api.router)
    api.include_router(stack_api.router)
    api.include_router(bundles_api.router)
    sampler = ui.install(api, platform)
    add_function_routes(api)
    return api


class Gateway:
    """Function calls go straight to the hot path; everything else through FastAPI."""

    def __init__(
        self,
        platform: Services,
        *,
        manage_lifespan: bool = True,
        access_sink: LineSink | None = None,
    ) -> None:
        """`access_sink`: where access lines go (`nuvem up`: stderr); by default they are
        records of the `nuvem.access` logger."""
        self.platform = platform
        settings = platform.settings
        access = access_log(
            access_format(settings.access_log), access_sink, settings.access_log_flush
        )
        self.api = build_api(platform, manage_lifespan=manage_lifespan, access=access)
        max_body = platform.settings.max_body
        self.functions = FunctionEndpoint(
            platform.controller, platform.auth, platform.metrics, max_body, access
        )
        self.models = ModelProtocols(platform, access)
        self.async_functions = AsyncFunctionEndpoint(
            platform.controller, platform.auth, platform.jobs, max_body, access
        )
        self.methods = MethodTable(self.api.openapi()["paths"])

    def close_streams(self) -> None:
        """End the dashboard's live streams: a stopping gateway waits for open requests,
        and an open tab's stream never ends by itself."""
        self.api.state.sampler.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path.startswith(PREFIX):
            # OPTIONS too reaches the function: its answer (CORS, say) is the handler's.
            if method in _FUNCTION_METHODS:
                await self.functions(scope, receive, send)
            else:
                await respond_error(send, not_allowed(method, path, _FUNCTION_ALLOW))
            return
        if path.startswith(ASYNC_PREFIX):
            if method in _ASYNC_METHODS:
                await self.async_functions(scope, receive, send)
            else:
                await _answer_methods(send, method, path, _ASYNC_ALLOW)
            return
        allow = self.methods.allowed(path)
        if allow is not None and (method == "OPTIONS" or method not in allow):
            await _answer_methods(send, method, path, allow)
        elif self.models.handles(path):
            await self.models(scope, receive, send)
        else:
            await self.api(scope, receive, send)


_FUNCTION_ALLOW = allow_header(FUNCTION_METHODS)
_FUNCTION_METHODS = frozenset(_FUNCTION_ALLOW)
_ASYNC_ALLOW = allow_header(ASYNC_METHODS)
_ASYNC_METHODS = frozenset(m.upper() for m in ASYNC_METHODS)


async def _answer_methods(send: Send, method: str, path: str, allow: tuple[str, ...]) -> None:
    """OPTIONS answered with the path's methods, or 405 for a method it does not take."""
    if method == "OPTIONS":
        # No Content-Length: a 204 has no body to measure (RFC 9110 §8.6).
        headers = [(b"allow", ", ".join(allow).encode())]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
    else:
        await respond_error(send, not_allowed(method, path, allow))


def create_app(platform: Services, *, manage_lifespan: bool = True) -> Any:
    return Guard(Gateway(platform, manage_lifespan=manage_lifespan), platform.settings)
