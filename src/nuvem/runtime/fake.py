"""`FakeRuntime`: replicas that run their handler inside this process, on its event loop.

The in-memory runtime: no worker process, no socket, no environment. Each replica loads
its function's handler here (setup() included) unless the runtime is given one handler
for all. It keeps the replica contract of the other runtimes (tests/runtime/
test_runtime_contract.py runs against it too), so the controller and the router can be
tested with it without starting processes. Sync handlers run inline, as in a worker with
one thread; `crash` and `fail_next` stand in for a worker that dies or fails to start.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nuvem.handler import Headers, Request, to_http
from nuvem.runtime import loader
from nuvem.runtime.environment import Environment
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import (
    DRAIN_OVERRUN,
    STOPPED,
    CallResult,
    Pending,
    SetupFailed,
    handler_raised,
    load_failed,
    replica_died,
)
from nuvem.runtime.replica_state import ReplicaState
from nuvem.runtime.worker_process import exit_cause
from nuvem.stack.function import FunctionSpec


class FakeReplica:
    """One in-process replica. Implements `Replica`."""

    def __init__(
        self,
        replica_id: str,
        spec: FunctionSpec,
        handler: loader.LoadedHandler,
        pid: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = replica_id
        self.function = spec.name
        self.fingerprint = spec.fingerprint()
        self.node = "local"
        self.pid = pid  # made up: no process stands behind it
        self.state = ReplicaState.READY
        self.inflight = 0
        self.started_at = clock()
        self.exit_cause: str | None = None
        self.retired = False
        self.rss: int | None = None  # what `memory()` reports; set it to test the watchdog
        self._handler = handler
        self._clock = clock
        # Running calls: the answer each owes and when it began.
        self._calls: dict[asyncio.Task[None], tuple[asyncio.Future[CallResult], float]] = {}
        self._dead = asyncio.Event()

    def submit(self, meta: CallMeta, body: bytes) -> asyncio.Future[CallResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CallResult] = loop.create_future()
        if self.state is ReplicaState.DEAD:
            future.set_exception(replica_died(self.function, self.id, self.exit_cause))
            return future
        request = Request(body, meta.method, meta.path, meta.query, Headers(meta.headers))
        task = loop.create_task(self._call(request, future))
        self._calls[task] = (future, self._clock())
        task.add_done_callback(self._calls.pop)
        return future

    async def _call(self, request: Request, future: asyncio.Future[CallResult]) -> None:
        try:
            status, headers, body = to_http(await loader.invoke(self._handler, request))
        except Exception as exc:  # a user error fails its own call, never the replica
            if not future.done():
                future.set_exception(handler_raised(self.function, type(exc).__name__, str(exc)))
            return
        if not future.done():
            future.set_result(CallResult(status, headers, body))

    def oldest_call_age(self) -> float:
        if not self._calls:
            return 0.0
        return self._clock() - min(began for _, began in self._calls.values())

    def memory(self) -> int | None:
        return self.rss

    async def wait_dead(self) -> None:
        await self._dead.wait()

    async def drain_and_stop(self, grace: float) -> None:
        if self.state is ReplicaState.DEAD:
            return
        self.retired = True
        self.state = ReplicaState.DRAINING
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=grace)
        if self._calls:
            self.kill(DRAIN_OVERRUN)
        else:
            self._die(STOPPED)
        await self._dead.wait()

    def kill(self, reason: str) -> None:
        if self.state is not ReplicaState.DEAD:
            self._die(reason)

    def crash(self, returncode: int = -signal.SIGKILL) -> None:
        """Die as a worker process ending with `returncode` would (default: SIGKILLed)."""
        if self.state is not ReplicaState.DEAD:
            self._die(exit_cause(returncode))

    def _die(self, cause: str) -> None:
        if self.exit_cause is None:
            self.exit_cause = cause
        self.state = ReplicaState.DEAD
        error = replica_died(self.function, self.id, self.exit_cause)
        for task, (future, _) in list(self._calls.items()):
            task.cancel()
            if not future.done():
                future.set_exception(error)
        self._dead.set()


class FakeRuntime:
    """Starts `FakeReplica`s. Implements `Runtime`."""

    def __init__(
        self,
        handler: Callable[[Request], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The handler every replica runs; None: each loads its spec's handler in-process.
        self.handler = handler
        self.clock = clock
        self.started: list[FakeReplica] = []
        self.fail_next = 0  # this many of the next starts raise SetupFailed
        self.closed = False
        self._pids = itertools.count(1000)

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> FakeReplica:
        if self.fail_next:
            self.fail_next -= 1
            raise SetupFailed(f"function {spec.name!r}: setup failed")
        replica = FakeReplica(
            replica_id, spec, await self._load(spec), next(self._pids), self.clock
        )
        self.started.append(replica)
        return replica

    def pending(self, function: str) -> list[Pending]:
        return []

    async def _load(self, spec: FunctionSpec) -> loader.LoadedHandler:
        if self.handler is not None:
            is_async = inspect.iscoroutinefunction(self.handler)
            return loader.LoadedHandler(call=self.handler, is_async=is_async)
        try:
            return await loader.load(spec.handler, Path(spec.root))
        except Exception as exc:  # what a worker reports as SETUP_FAILED
            raise load_failed(spec, f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        self.closed = True
