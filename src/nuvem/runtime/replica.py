"""The gateway's handle on one replica: its process, its connection and its calls in flight."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from nuvem.errors import FunctionFailed, ReplicaDied
from nuvem.runtime import protocol
from nuvem.runtime.protocol import CallMeta, ErrorMeta, Kind, ResultMeta
from nuvem.runtime.replica_state import ReplicaState


@dataclass(slots=True)
class CallResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def exit_cause(returncode: int | None) -> str:
    """Say how a process ended, in words: `killed by SIGKILL`, `exited with code 3`."""
    if returncode is None:
        return "connection to the replica was lost"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


class Replica:
    """One running copy of a function. Owned by the controller; used by the router."""

    def __init__(
        self,
        replica_id: str,
        function: str,
        fingerprint: str,
        process: asyncio.subprocess.Process,
        connection: protocol.FrameProtocol,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = replica_id
        self.function = function
        self.fingerprint = fingerprint
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
        """Take over the connection's frames (after the handshake)."""
        self._connection.attach(self._on_frame, self._on_lost)

    def submit(self, meta: CallMeta, body: bytes) -> asyncio.Future[CallResult]:
        """Send one call; the future resolves with the answer or raises the failure."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CallResult] = loop.create_future()
        if self.state is ReplicaState.DEAD:
            future.set_exception(self._died_error())
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
            future.set_exception(
                FunctionFailed(
                    f"function {self.function!r} raised {error.kind}: {error.message}",
                    f"see `nuvem logs {self.function}` for the traceback",
                )
            )

    def _on_lost(self, exc: Exception | None) -> None:
        self._lost_task = asyncio.get_running_loop().create_task(self._on_connection_lost())

    async def _on_connection_lost(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.process.returncode is None:
                # The socket closed but the process lingers: it is of no use any more.
                try:
                    await asyncio.wait_for(self.process.wait(), timeout=2.0)
                except TimeoutError:
                    self.process.kill()
                    await self.process.wait()
        if self.exit_cause is None:
            self.exit_cause = exit_cause(self.process.returncode)
        self.state = ReplicaState.DEAD
        error = self._died_error()
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(error)
        self._connection.close()
        self._idle.set()
        self._dead.set()

    def _died_error(self) -> ReplicaDied:
        return ReplicaDied(
            f"function {self.function!r}: replica {self.id} {self.exit_cause} "
            "while handling the request",
            "mark the function `idempotent: true` to retry such calls on another replica",
        )

    async def wait_dead(self) -> None:
        await self._dead.wait()

    async def drain_and_stop(self, grace: float) -> None:
        """Stop taking calls, let those in flight finish (up to `grace` s), then end."""
        if self.state is ReplicaState.DEAD:
            return
        self.retired = True
        self.state = ReplicaState.DRAINING
        deadline = self._clock() + grace
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        if self.exit_cause is None:
            self.exit_cause = "stopped by the controller"
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._dead.wait(), timeout=max(1.0, deadline - self._clock()))
        except TimeoutError:
            self.kill("did not stop within the drain period")
            await self._dead.wait()

    def kill(self, reason: str) -> None:
        self.exit_cause = reason
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
