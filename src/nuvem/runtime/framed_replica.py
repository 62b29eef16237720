"""`FramedReplica`: a replica reached over nuvem's framed protocol, whatever the stream.

It keeps the calls in flight (multiplexed by call id), answers them as frames arrive,
drains, and ends with its process. The stream may be the local runtime's socketpair or,
on a cluster, an authenticated TCP connection to a worker on another node: anything an
asyncio transport carries `protocol.FrameProtocol` over. The process behind it is a
`WorkerProcess`. `connect_replica` opens the connection and waits for the worker's HELLO.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

from nuvem.runtime import protocol
from nuvem.runtime.drain import Draining
from nuvem.runtime.protocol import CallMeta, ErrorMeta, HelloMeta, Kind, ResultMeta
from nuvem.runtime.replica import (
    STOPPED,
    CallResult,
    SetupFailed,
    handler_raised,
    load_failed,
    replica_died,
)
from nuvem.runtime.replica_state import ReplicaState
from nuvem.runtime.worker_process import WorkerProcess, end, exit_cause
from nuvem.stack.function import FunctionSpec

LINGER = 2.0  # seconds a worker may outlive its connection before it is killed

# Opens the stream to a worker with the given protocol factory and returns the protocol.
Connect = Callable[[Callable[[], protocol.FrameProtocol]], Awaitable[protocol.FrameProtocol]]


class FramedReplica(Draining):
    """One running copy of a function, spoken to in frames. Implements `Replica`."""

    def __init__(
        self,
        replica_id: str,
        function: str,
        fingerprint: str,
        process: WorkerProcess,
        connection: protocol.FrameProtocol,
        node: str = "local",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = replica_id
        self.function = function
        self.fingerprint = fingerprint
        self.node = node
        self.process = process
        self.state = ReplicaState.STARTING
        self.inflight = 0  # calls handed to this replica by the router and not yet released
        self.started_at = clock()
        self.exit_cause: str | None = None
        self.retired = False  # the controller asked it to stop: its exit is no failure
        self._clock = clock
        self._connection = connection
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[CallResult], float]] = {}
        self._lost_task: asyncio.Task[None] | None = None
        self._dead = asyncio.Event()
        self._idle = asyncio.Event()  # set while no call is pending: what a drain waits for
        self._idle.set()

    @property
    def pid(self) -> int:
        return self.process.pid

    def attach(self) -> None:
        """Take over the connection's frames (after the handshake): ready for calls."""
        self.state = ReplicaState.READY
        self._connection.attach(self._on_frame, self._on_lost)

    def submit(self, meta: CallMeta, body: bytes) -> asyncio.Future[CallResult]:
        """Send one call; the future resolves with the answer or raises the failure."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CallResult] = loop.create_future()
        if self.state is ReplicaState.DEAD:
            future.set_exception(replica_died(self.function, self.id, self.exit_cause))
            return future
        call_id = next(self._ids)
        self._pending[call_id] = (future, self._clock())
        self._idle.clear()
        head, payload = protocol.encode_parts(Kind.CALL, call_id, meta.dump(), body)
        self._connection.write(head, payload)
        return future

    def oldest_call_age(self) -> float:
        if not self._pending:
            return 0.0
        now = self._clock()
        return max(now - started for _, started in self._pending.values())

    def memory(self) -> int | None:
        return self.process.rss()

    def _on_frame(self, frame: protocol.Frame) -> None:
        entry = self._pending.pop(frame.call_id, None)
        if not self._pending:
            self._idle.set()
        if entry is None or entry[0].done():
            return
        future = entry[0]
        if frame.kind is Kind.RESULT:
            meta = ResultMeta.load(frame.meta)
            future.set_result(CallResult(meta.status, meta.headers, frame.body))
        elif frame.kind is Kind.ERROR:
            error = ErrorMeta.load(frame.meta)
            future.set_exception(handler_raised(self.function, error.kind, error.message))

    def _on_lost(self, exc: Exception | None) -> None:
        self._lost_task = asyncio.get_running_loop().create_task(self._on_connection_lost())

    async def _on_connection_lost(self) -> None:
        process = self.process
        if process.returncode is None:
            # The stream closed but the process lingers: it is of no use any more.
            try:
                async with asyncio.timeout(LINGER):
                    await process.wait()
            except TimeoutError:
                await end(process)
        if self.exit_cause is None:
            self.exit_cause = process.lost or exit_cause(process.returncode)
        self.state = ReplicaState.DEAD
        error = replica_died(self.function, self.id, self.exit_cause)
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(error)
        self._connection.close()
        self._idle.set()
        self._dead.set()

    async def _terminate(self) -> None:
        if self.exit_cause is None:
            self.exit_cause = STOPPED
        self.process.terminate()

    def kill(self, reason: str) -> None:
        if self.state is ReplicaState.DEAD:
            return
        self.exit_cause = reason
        self.process.kill()


async def connect_replica(
    spec: FunctionSpec,
    replica_id: str,
    process: WorkerProcess,
    connect: Connect,
    setup_timeout: float,
    node: str = "local",
) -> tuple[FramedReplica, HelloMeta]:
    """Open the stream to a starting worker and wait for its HELLO: the replica, ready.

    Raises SetupFailed when the handler did not load, the worker ended first, or setup took
    longer than `setup_timeout`; then neither the stream nor the process is left behind.
    """
    loop = asyncio.get_running_loop()
    first: asyncio.Future[protocol.Frame | None] = loop.create_future()

    def on_first(frame: protocol.Frame) -> None:
        if not first.done():
            first.set_result(frame)

    def on_lost(exc: Exception | None) -> None:
        if not first.done():
            first.set_result(None)

    try:
        connection = await connect(lambda: protocol.FrameProtocol(on_first, on_lost))
    except BaseException:
        await end(process)
        raise
    try:
        hello = await _hello(spec, replica_id, process, first, setup_timeout)
    except BaseException:
        # Failed or cancelled mid-start: no half-started process or stream may linger.
        connection.close()
        await end(process)
        raise
    replica = FramedReplica(replica_id, spec.name, spec.fingerprint(), process, connection, node)
    replica.attach()
    return replica, hello


async def _hello(
    spec: FunctionSpec,
    replica_id: str,
    process: WorkerProcess,
    first: asyncio.Future[protocol.Frame | None],
    setup_timeout: float,
) -> HelloMeta:
    try:
        async with asyncio.timeout(setup_timeout):
            frame = await first
    except TimeoutError:
        raise SetupFailed(
            f"function {spec.name!r}: handler setup took longer than {setup_timeout:.0f}s",
            "make setup() faster or load large files lazily",
        ) from None
    if frame is None:
        code = await process.wait()
        raise SetupFailed(
            f"function {spec.name!r}: replica {replica_id} {exit_cause(code)} during setup",
            f"see `nuvem logs {spec.name}`",
        )
    if frame.kind is Kind.SETUP_FAILED:
        raise load_failed(spec, ErrorMeta.load(frame.meta).message)
    return HelloMeta.load(frame.meta)
