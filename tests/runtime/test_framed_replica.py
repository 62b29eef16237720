"""`FramedReplica` over a TCP connection and a process that is no subprocess: what a
cluster runtime reuses (there the worker is on another node, its process an actor's)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from nuvem.errors import ReplicaDied
from nuvem.runtime import protocol
from nuvem.runtime.framed_replica import FramedReplica, connect_replica
from nuvem.runtime.protocol import CallMeta, HelloMeta, Kind, ResultMeta
from nuvem.runtime.replica import SetupFailed
from nuvem.runtime.replica_state import ReplicaState
from support import spec

pytestmark = pytest.mark.anyio
SPEC = spec()


class RemoteWorker(protocol.FrameProtocol):
    """The far end: says HELLO (or SETUP_FAILED), answers calls with their body, holds
    those whose path is /hold until told to let them go."""

    def __init__(self, fail_setup: bool = False) -> None:
        super().__init__(self.on_call, lambda exc: None)
        self.fail_setup = fail_setup
        self.held: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.fail_setup:
            error = {"kind": "RuntimeError", "message": "no weights", "traceback": ""}
            self.write(protocol.encode(Kind.SETUP_FAILED, 0, error))
        else:
            self.write(protocol.encode(Kind.HELLO, 0, HelloMeta(4242, "3.11").dump()))

    def on_call(self, frame: protocol.Frame) -> None:
        if CallMeta.load(frame.meta).path == "/hold":
            self.held.append(frame.call_id)
            return
        self.answer(frame.call_id, frame.body)

    def answer(self, call_id: int, body: bytes) -> None:
        self.write(protocol.encode(Kind.RESULT, call_id, ResultMeta(200, []).dump(), body))


class ActorProcess:
    """A WorkerProcess whose signals reach the far end as they would through an actor."""

    def __init__(self, workers: list[RemoteWorker]) -> None:
        self.workers = workers  # the far end, once it has accepted the connection
        self.pid = 4242
        self.returncode: int | None = None
        self.lost: str | None = None
        self._ended = asyncio.Event()

    async def wait(self) -> int | None:
        await self._ended.wait()
        return self.returncode

    def terminate(self) -> None:  # the worker drains: answers what it holds, then exits
        worker = self.workers[-1]
        for call_id in worker.held:
            worker.answer(call_id, b"finished")
        self._end(0)

    def kill(self) -> None:
        self._end(-9)

    def rss(self) -> int | None:
        return 12345

    def _end(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self.workers[-1].close()
            self._ended.set()


@dataclass
class Served:
    """The far end's TCP server: the workers it accepted, and whether their setup fails."""

    port: int = 0
    fail_setup: bool = False
    workers: list[RemoteWorker] = field(default_factory=list)

    def accept(self) -> RemoteWorker:
        self.workers.append(RemoteWorker(self.fail_setup))
        return self.workers[-1]

    async def connect(
        self, factory: Callable[[], protocol.FrameProtocol]
    ) -> protocol.FrameProtocol:
        _, connection = await asyncio.get_running_loop().create_connection(
            factory, "127.0.0.1", self.port
        )
        return connection


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    state = Served()
    server = await asyncio.get_running_loop().create_server(state.accept, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    yield state
    server.close()
    await server.wait_closed()


async def open_replica(served: Served) -> tuple[FramedReplica, HelloMeta]:
    process = ActorProcess(served.workers)
    return await connect_replica(SPEC, "f-1", process, served.connect, 5.0, "node-2")


async def test_calls_travel_over_tcp_and_a_drain_lets_them_finish(served: Served) -> None:
    replica, hello = await open_replica(served)
    assert (replica.state, replica.node, replica.pid, hello.pid) == (
        ReplicaState.READY,
        "node-2",
        4242,
        4242,
    )
    assert replica.memory() == 12345
    answer = await replica.submit(CallMeta("POST", "/", "", []), b"over tcp")
    assert (answer.status, answer.body) == (200, b"over tcp")
    held = replica.submit(CallMeta("POST", "/hold", "", []), b"")
    await replica.drain_and_stop(grace=0.01)
    assert (await held).body == b"finished"
    assert (replica.state, replica.exit_cause) == (ReplicaState.DEAD, "stopped by the controller")


async def test_a_kill_fails_the_calls_in_flight(served: Served) -> None:
    replica, _ = await open_replica(served)
    held = replica.submit(CallMeta("POST", "/hold", "", []), b"")
    replica.kill("its node was lost")
    with pytest.raises(ReplicaDied, match="its node was lost"):
        await held
    await replica.wait_dead()


async def test_a_failed_setup_far_away_raises_setup_failed(served: Served) -> None:
    served.fail_setup = True
    with pytest.raises(SetupFailed, match="failed to load: no weights"):
        await open_replica(served)
