"""`ApiLoader`: the gateway's FastAPI part (the /system APIs, /metrics, the dashboard, the
OpenAPI document), built in a thread while the gateway already serves.

Importing FastAPI, the APIs' pydantic models and the dashboard, and generating the OpenAPI
document, was about half of the gateway's own start (~0.5 s of CPU here): none of it is
needed by a call to a function or a model, which the gateway serves raw. So `nuvem up`
listens as soon as the router exists; the rest loads beside it, and a request that needs it
waits for it (never a 404 for a route that is only not loaded yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

from nuvem.gateway.asgi import Receive, Scope, Send
from nuvem.gateway.methods import MethodTable


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedApi:
    """What the loader builds: the app, the methods of every documented path, and the
    dashboard's sampler loop (run while the gateway serves) and stream ending."""

    app: Callable[[Scope, Receive, Send], Any]
    methods: MethodTable
    running: Callable[[], contextlib.AbstractAsyncContextManager[None]]
    close_streams: Callable[[], None]
    state: Any  # the app's state (tests and benchmarks read the dashboard's sampler there)


class ApiLoader:
    def __init__(self, build: Callable[[], LoadedApi]) -> None:
        self._build = build
        self._loading: asyncio.Future[LoadedApi] | None = None
        self.loaded: LoadedApi | None = None

    def start(self) -> asyncio.Future[LoadedApi]:
        """Begin building in a thread, once (again after a failed build); on a running loop."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        return self._loading

    async def get(self) -> LoadedApi:
        """The built API, waiting for it (and starting its build) when it is not yet."""
        if self.loaded is not None:
            return self.loaded
        # Shielded: a caller that goes away must not cancel the build the others wait for.
        return await asyncio.shield(self.start())

    async def _load(self) -> LoadedApi:
        try:
            loaded = await asyncio.to_thread(self._build)
        except BaseException:
            self._loading = None  # the next request tries again, and sees the error too
            raise
        self.loaded = loaded
        return loaded
