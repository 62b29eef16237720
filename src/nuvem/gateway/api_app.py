"""The gateway's FastAPI app: the /system APIs, /healthz and /metrics, the dashboard and the
OpenAPI document. Imported and built off the event loop by `ApiLoader` (api_loader.py),
never on the way to a function's first call."""

from __future__ import annotations

import functools

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
from nuvem.gateway.api_loader import LoadedApi
from nuvem.gateway.asgi import render_error
from nuvem.gateway.health import check_health
from nuvem.gateway.methods import MethodTable
from nuvem.gateway.openapi import add_function_routes
from nuvem.gateway.services import Services
from nuvem.gateway.ui import routes as ui


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "invalid request: " + "; ".join(problems)


def build_api(platform: Services) -> FastAPI:
    # The platform's start and stop are the gateway's (app.py): this app has no lifespan.
    api = FastAPI(
        title="nuvem gateway",
        version=nuvem.__version__,
        description="OpenFaaS-compatible gateway of the nuvem serverless platform.",
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

    # A GET is answered by the gateway itself (app.py), from its first byte on; this route
    # documents it and answers HEAD.
    @api.get("/healthz", tags=["health"])
    def healthz(request: Request) -> dict[str, str]:
        return check_health(platform, request.headers.get("authorization"))

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
    ui.install(api, platform)
    add_function_routes(api)
    return api


def load_api(platform: Services) -> LoadedApi:
    """The app built, with its OpenAPI document generated (it lists each path's methods)."""
    api = build_api(platform)
    sampler = api.state.sampler
    return LoadedApi(
        app=api,
        methods=MethodTable(api.openapi()["paths"]),
        running=functools.partial(ui.running, sampler, platform),
        close_streams=sampler.close,
        state=api.state,
    )
