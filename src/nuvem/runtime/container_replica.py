"""`ContainerReplica`: one container of an image function, spoken to over HTTP.

Calls go to the container's published loopback port on a kept-alive connection pool of
nuvem's own (runtime/http_pool.py; a fifth of aiohttp's CPU per call or less,
docs/containers.md): path, query, headers and body as the gateway received them. The
replica ends with its container: when the engine's attached process exits, the engine's
record says how (exit code, or the memory limit's kill) and that becomes the exit cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Callable

from nuvem.errors import NuvemError
from nuvem.runtime.container_engine import Attached, ContainerControl, ContainerExit, ContainerRun
from nuvem.runtime.drain import Draining
from nuvem.runtime.http_connection import HttpFailed
from nuvem.runtime.http_pool import HttpPool
from nuvem.runtime.protocol import CallMeta
from nuvem.runtime.replica import STOPPED, CallResult, replica_died
from nuvem.runtime.replica_state import ReplicaState

STOP_GRACE = 2.0  # seconds a container gets to exit on SIGTERM once drained
# Seconds a call whose connection dropped waits for the container's exit cause: the engine's
# record of it (podman inspect) takes a while on a busy machine.
CAUSE_WAIT = 5.0


def container_cause(exit: ContainerExit | None, memory: int | None, code: int) -> str:
    """How a container ended, in words; `code` is the attached process's exit code."""
    if exit is not None and exit.oom_killed:
        limit = f" ({memory / 2**20:g}Mi)" if memory is not None else ""
        return (
            f"container killed by its memory limit{limit} (OOM); raise resources.memory "
            "or make the function use less"
        )
    found = exit.code if exit is not None and exit.code is not None else code
    if found > 128 and found - 128 in signal.Signals._value2member_map_:
        return f"container exited with code {found} (killed by {signal.Signals(found - 128).name})"
    return f"container exited with code {found}"


class ContainerReplica(Draining):
    """Implements `Replica` for one container."""

    def __init__(
        self,
        replica_id: str,
        function: str,
        fingerprint: str,
        engine: ContainerControl,
        run: ContainerRun,
        attached: Attached,
        pool: HttpPool,
        clock: Callable[[], float] = time.monotonic,
        node: str = "local",  # a cluster node's address when it runs there
        # An answer that is not the function's but its path's refusal, as an error.
        refusal: Callable[[CallResult], NuvemError | None] | None = None,
    ) -> None:
        self._refusal = refusal
        self.id = replica_id
        self.function = function
        self.fingerprint = fingerprint
        self.node = node
        self.state = ReplicaState.READY
        self.inflight = 0
        self.started_at = clock()
        self.exit_cause: str | None = None
        self.retired = False
        self.engine = engine
        self.run = run
        self.attached = attached
        self.pool = pool
        self._clock = clock
        # Each call in flight: the pool's future, the caller's, and when it was sent.
        self._calls: dict[asyncio.Future[CallResult], tuple[asyncio.Future[CallResult], float]] = {}
        self._ended = asyncio.Event()  # the container has exited: exit_cause is set
        self._dead = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch = asyncio.get_running_loop().create_task(self._watch_exit())

    @property
    def pid(self) -> int:
        return self.attached.pid

    def submit(self, meta: CallMeta, body: bytes) -> asyncio.Future[CallResult]:
        future: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        if self.state is ReplicaState.DEAD:
            future.set_exception(replica_died(self.function, self.id, self.exit_cause))
            return future
        target = meta.path + ("?" + meta.query if meta.query else "")
        headers = meta.headers
        if not any(key == "x-start-time" for key, _ in headers):  # the gateway's, else now
            headers = [*headers, ("x-start-time", str(time.time_ns()))]
        sent = self.pool.request(meta.method, target, headers, body)
        self._calls[sent] = (future, self._clock())
        self._idle.clear()
        sent.add_done_callback(functools.partial(self._answered, future))
        # A caller that gives up (its deadline passed) closes the call's connection too.
        future.add_done_callback(lambda f: sent.cancel() if f.cancelled() else None)
        return future

    def _answered(
        self, future: asyncio.Future[CallResult], sent: asyncio.Future[CallResult]
    ) -> None:
        self._calls.pop(sent, None)
        if not self._calls:
            self._idle.set()
        if future.done() or sent.cancelled():
            return
        error = sent.exception()
        if error is None:
            refused = self._refusal(sent.result()) if self._refusal is not None else None
            if refused is not None:
                future.set_exception(refused)
            else:
                future.set_result(sent.result())
            return
        if not isinstance(error, HttpFailed):  # the call itself was wrong (BadRequest)
            future.set_exception(error)
            return
        task = asyncio.get_running_loop().create_task(self._failed(future, error))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _failed(self, future: asyncio.Future[CallResult], error: BaseException) -> None:
        # The container may be going: its exit cause says more than the socket.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), CAUSE_WAIT)
        cause = self.exit_cause or f"dropped the connection ({error})"
        if not future.done():  # the exit may have failed it meanwhile
            future.set_exception(replica_died(self.function, self.id, cause))

    def oldest_call_age(self) -> float:
        if not self._calls:
            return 0.0
        now = self._clock()
        return max(now - started for _, started in self._calls.values())

    def memory(self) -> int | None:
        return None  # the engine enforces resources.memory itself

    async def _watch_exit(self) -> None:
        code = await self.attached.wait()
        try:
            exit = await self.engine.inspect(self.run.name)
        except Exception:  # the engine is away: the attached process's code still tells
            exit = None
        if self.exit_cause is None:
            # A container on a lost cluster node has no exit code: its attached side says so.
            lost = getattr(self.attached, "lost", None)
            self.exit_cause = (
                lost if isinstance(lost, str) else container_cause(exit, self.run.memory, code)
            )
        self.state = ReplicaState.DEAD
        self._ended.set()
        error = replica_died(self.function, self.id, self.exit_cause)
        for sent, (future, _) in list(self._calls.items()):
            if not future.done():
                future.set_exception(error)
            sent.cancel()
        # Removed before it counts as dead: once wait_dead returns, nothing of it is left.
        with contextlib.suppress(Exception):
            await self.engine.remove(self.run.name)
        await self.pool.close()
        self._dead.set()
        self._idle.set()

    async def _terminate(self) -> None:
        if self.exit_cause is None:
            self.exit_cause = STOPPED
        await self.engine.stop(self.run.name, STOP_GRACE)

    def kill(self, reason: str) -> None:
        if self.state is ReplicaState.DEAD:
            return
        self.exit_cause = reason
        task = asyncio.get_running_loop().create_task(self.engine.kill(self.run.name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
