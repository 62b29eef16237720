"""The gateway's ASGI application: function and model calls go straight to their raw
endpoints; the rest (the /system APIs, /metrics, the dashboard, /docs) to the FastAPI part,
which loads in the background once the gateway serves (api_loader.py)."""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any

from nuvem.gateway.access_log import access_format, access_log
from nuvem.gateway.api_loader import ApiLoader, LoadedApi
from nuvem.gateway.asgi import Receive, Scope, Send, respond_error
from nuvem.gateway.async_invoke import ASYNC_PREFIX, AsyncFunctionEndpoint
from nuvem.gateway.async_openapi import ASYNC_METHODS, async_paths
from nuvem.gateway.guard import Guard
from nuvem.gateway.health import PATH as HEALTH
from nuvem.gateway.health import answer_health
from nuvem.gateway.invoke import PREFIX, FunctionEndpoint
from nuvem.gateway.line_sinks import LineSink
from nuvem.gateway.methods import MethodTable, allow_header, not_allowed
from nuvem.gateway.model_openapi import model_paths
from nuvem.gateway.openapi_parts import FUNCTION_METHODS
from nuvem.gateway.services import Services
from nuvem.gateway.serving import ModelProtocols

log = logging.getLogger(__name__)

# The methods of the paths served before the FastAPI part has loaded: the model protocols'
# entries are the very ones the whole document carries (openapi.py adds them to it), so
# OPTIONS and 405 answer alike before and after.
EARLY_METHODS = MethodTable({**async_paths(), **model_paths()})


class Gateway:
    """Function and model calls go straight to their hot paths; everything else through
    the FastAPI part, once it has loaded."""

    def __init__(
        self,
        platform: Services,
        *,
        manage_lifespan: bool = True,
        access_sink: LineSink | None = None,
    ) -> None:
        """`access_sink`: where access lines go (`nuvem up`: stderr); by default they are
        records of the `nuvem.access` logger. `manage_lifespan`: the ASGI lifespan starts
        and stops the platform (else its owner does)."""
        self.platform = platform
        self.manage_lifespan = manage_lifespan
        settings = platform.settings
        self.access = access_log(
            access_format(settings.access_log), access_sink, settings.access_log_flush
        )
        max_body = platform.settings.max_body
        self.functions = FunctionEndpoint(
            platform.controller, platform.auth, platform.metrics, max_body, self.access
        )
        self.models = ModelProtocols(platform, self.access)
        self.async_functions = AsyncFunctionEndpoint(
            platform.controller, platform.auth, platform.jobs, max_body, self.access
        )
        self.api = ApiLoader(self._load_api)
        self._dashboard: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None

    def _load_api(self) -> LoadedApi:
        # Imported here, in the loader's thread: FastAPI and the APIs' models are most of
        # what the gateway's start would otherwise import before it could listen.
        from nuvem.gateway.api_app import load_api

        return load_api(self.platform)

    async def loaded(self) -> LoadedApi:
        """The FastAPI part, waiting for it to load (a test or a benchmark reads its state)."""
        return await self.api.get()

    def close_streams(self) -> None:
        """End the dashboard's live streams: a stopping gateway waits for open requests,
        and an open tab's stream never ends by itself."""
        if self.api.loaded is not None:
            self.api.loaded.close_streams()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            else:
                await (await self.api.get()).app(scope, receive, send)
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
        if path == HEALTH and method == "GET":
            await answer_health(self.platform, scope, send)
            return
        loaded = self.api.loaded
        methods = EARLY_METHODS if loaded is None else loaded.methods
        allow = methods.allowed(path)
        if allow is not None and (method == "OPTIONS" or method not in allow):
            await _answer_methods(send, method, path, allow)
        elif self.models.handles(path):
            await self.models(scope, receive, send)
        elif loaded is None:
            # A route of the FastAPI part, or none: which, and its methods, only the whole
            # document says. Asked again once it has loaded.
            await self.api.get()
            await self(scope, receive, send)
        else:
            await loaded.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan, as Starlette runs one: a failure is reported, then raised."""
        await receive()  # lifespan.startup
        try:
            if self.manage_lifespan:
                await self.platform.start()
            self._stopping = asyncio.Event()
            self._dashboard = asyncio.create_task(self._run_dashboard(self._stopping))
        except BaseException:
            await send({"type": "lifespan.startup.failed", "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await self._shutdown()
        except BaseException:
            await send({"type": "lifespan.shutdown.failed", "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.shutdown.complete"})

    async def _run_dashboard(self, stopping: asyncio.Event) -> None:
        """Load the FastAPI part now the gateway serves, then run the dashboard's sampler
        until the gateway stops."""
        loaded = await self.api.get()
        async with loaded.running():
            await stopping.wait()

    async def _shutdown(self) -> None:
        try:
            if self._dashboard is not None and self._stopping is not None:
                self._stopping.set()
                try:
                    await self._dashboard
                except Exception:  # a failed load was answered to its requests already
                    log.exception("the gateway's API did not load")
            if self.manage_lifespan:
                await self.platform.stop()
        finally:
            # Last: the server answered every call before shutting the lifespan down, so
            # every access line is queued by now.
            if self.access is not None:
                self.access.close()


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
