"""`RayRuntime`: replicas on a Ray cluster, called over nuvem's own framed protocol.

Ray places each replica (a `ReplicaActor` with the function's CPUs, GPUs, memory, labels),
keeps its resources reserved, and tells when its node is lost. Everything on the call path
stays nuvem's: the gateway opens an authenticated TCP link to the worker the actor started
and speaks the same frames as to a local worker, so the router, queues, deadlines and
batching are the same on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from nuvem.cluster import code_bundle, link, ray_api
from nuvem.cluster.bundle_store import stored_code
from nuvem.cluster.placement import NodeRoom, actor_options, demand_of, pending_reason
from nuvem.cluster.replica_actor import ReplicaActor
from nuvem.runtime import protocol
from nuvem.runtime.environment import Environment
from nuvem.runtime.framed_replica import connect_replica
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.replica import Pending, Replica, SetupFailed
from nuvem.stack.function import FunctionSpec

log = logging.getLogger(__name__)

SETUP_TIMEOUT = 300.0
CONNECT_WAIT = 30.0
STATUS_INTERVAL = 1.0  # how often memory and log lines are read from a replica's node


class Followed(Protocol):
    """A replica's actor whose status the gateway polls (memory, log lines)."""

    actor: Any
    done: asyncio.Event
    memory: int | None


class RemoteWorker:
    """A worker process on another node, seen through its actor. Implements `WorkerProcess`."""

    def __init__(self, actor: Any, pid: int, node: str) -> None:
        self.actor = actor
        self.pid = pid
        self.node = node
        self.returncode: int | None = None
        self.lost: str | None = None
        self.memory: int | None = None  # the latest reading from its node
        self.on_lost: Callable[[], None] = lambda: None
        self.done = asyncio.Event()
        self._watch = asyncio.get_running_loop().create_task(self._watch_exit())

    async def _watch_exit(self) -> None:
        try:
            self.returncode = await self.actor.wait.remote()
        except ray_api.actor_died_errors() as exc:
            # The actor is gone without its worker's exit code: its node died or was cut off.
            self.lost = f"was lost with its node {self.node} ({loss_of(exc)})"
            # The link may still look open (a raylet crashed, its machine lives on): close
            # it, so the replica is dead now and the orphaned worker ends itself.
            self.on_lost()
        finally:
            self.done.set()
            with contextlib.suppress(Exception):
                ray_api.kill(self.actor)  # frees the node's resources at once

    async def wait(self) -> int | None:
        await self.done.wait()
        return self.returncode

    def terminate(self) -> None:
        if not self.done.is_set():
            self.actor.terminate.remote()

    def kill(self) -> None:
        if not self.done.is_set():
            self.actor.kill.remote()

    def rss(self) -> int | None:
        return self.memory


def loss_of(exc: BaseException) -> str:
    if type(exc).__name__ == "ActorUnavailableError":
        return "the node stopped answering"
    return "the node or the replica's actor died"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _code_of(spec: FunctionSpec) -> tuple[code_bundle.CodeBundle, str]:
    """What a node gets of the function's code, and the function's folder inside it: a
    bundle-deployed function's stored bundle as uploaded; else its folder, packed."""
    stored = stored_code(spec)
    return stored if stored is not None else (code_bundle.pack(Path(spec.root)), "")


class RayRuntime:
    """Starts replicas as actors on a Ray cluster the driver is connected to."""

    def __init__(
        self,
        logbook: LogBook,
        *,
        setup_timeout: float = SETUP_TIMEOUT,
        nodes: Callable[[], list[NodeRoom]] | None = None,
        connect: Callable[[], None] | None = None,
    ) -> None:
        self.logbook = logbook
        self._connect_driver = connect  # makes this process a Ray driver; None: it is one
        self._driver_lock = asyncio.Lock()
        self.setup_timeout = setup_timeout
        self._pending: dict[str, tuple[str, Pending]] = {}  # replica id -> function, why
        self._nodes = nodes or live_nodes
        self._bundles: dict[str, Any] = {}  # digest -> ObjectRef: sent to the object store once
        self._actors: dict[str, Any] = {}  # replica id -> its actor, until it is gone
        self._tasks: set[asyncio.Task[None]] = set()

    async def driver(self) -> None:
        # Connected on the first start, not at construction: the head nuvem starts beside
        # the gateway is up only once the gateway serves.
        async with self._driver_lock:
            if self._connect_driver is not None:
                await asyncio.to_thread(self._connect_driver)
                self._connect_driver = None

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> Replica:
        await self.driver()
        bundle, folder = await asyncio.to_thread(_code_of, spec)
        ref = self._bundles.get(bundle.digest)
        if ref is None:
            ref = self._bundles[bundle.digest] = await asyncio.to_thread(ray_api.put, bundle.data)
        secret = os.urandom(32)
        actor = ray_api.remote_actor(ReplicaActor, actor_options(spec))
        self._actors[replica_id] = actor
        try:
            await self.placed(spec, replica_id, actor)
            async with asyncio.timeout(self.setup_timeout):
                host, port, node = await actor.prepare.remote(
                    spec.model_dump_json(), replica_id, [ref], bundle.digest, secret, folder
                )
            serving = actor.serve.remote(CONNECT_WAIT)
            sock = await link.connect(host, port, secret)
            worker = RemoteWorker(actor, await serving, node)
            return await self._connect(spec, replica_id, worker, sock)
        except TimeoutError:
            self._forget(replica_id, actor)
            raise SetupFailed(
                f"function {spec.name!r}: replica {replica_id} was not ready within "
                f"{self.setup_timeout:.0f}s (environment build and handler setup)",
                "make setup() faster, or look at the node's logs",
            ) from None
        except ray_api.actor_died_errors() as exc:
            self._forget(replica_id, actor)
            raise SetupFailed(
                f"function {spec.name!r}: replica {replica_id} failed on its node: "
                f"{first_line(exc)}",
                f"see `nuvem logs {spec.name}`",
            ) from None
        except ray_api.task_error() as exc:
            self._forget(replica_id, actor)
            cause = getattr(exc, "cause", None) or exc
            raise SetupFailed(
                f"function {spec.name!r}: replica {replica_id} could not be prepared on its "
                f"node: {first_line(cause)}",
                f"fix the function and deploy it again; see `nuvem logs {spec.name}`",
            ) from None
        except BaseException:
            self._forget(replica_id, actor)
            raise
        finally:
            self._pending.pop(replica_id, None)

    async def placed(self, spec: FunctionSpec, replica_id: str, actor: Any) -> None:
        """Wait until Ray has placed the actor; meanwhile say why it waits."""
        placed = asyncio.ensure_future(actor.__ray_ready__.remote())
        # Cancelled while pending, the actor is killed: its answer is of no interest then.
        placed.add_done_callback(lambda f: f.cancelled() or f.exception())
        demand = demand_of(spec)
        said = None
        while True:
            done, _ = await asyncio.wait({placed}, timeout=1.0)
            if done:
                placed.result()
                return
            nodes = await asyncio.to_thread(self._nodes)
            shortage = pending_reason(demand, nodes)
            self._pending[replica_id] = (
                spec.name,
                Pending(replica_id, shortage.short, shortage.reason),
            )
            if shortage.reason != said:
                said = shortage.reason
                self.logbook.write(spec.name, replica_id, "system", f"pending: {said}")

    async def _connect(
        self, spec: FunctionSpec, replica_id: str, worker: RemoteWorker, sock: socket.socket
    ) -> Replica:
        async def connect(
            factory: Callable[[], protocol.FrameProtocol],
        ) -> protocol.FrameProtocol:
            try:
                _, connection = await asyncio.get_running_loop().create_connection(
                    factory, sock=sock
                )
            except BaseException:
                sock.close()
                raise
            worker.on_lost = connection.close
            return connection

        replica, hello = await connect_replica(
            spec, replica_id, worker, connect, self.setup_timeout, node=worker.node
        )
        self.logbook.write(
            spec.name,
            replica_id,
            "system",
            f"replica ready on node {worker.node} (pid {hello.pid}, Python {hello.python})",
        )
        self.follow(spec.name, replica_id, worker)
        return replica

    def follow(self, function: str, replica_id: str, worker: Followed) -> None:
        """Read the replica's memory and log lines from its node until it is gone."""
        self._spawn(self._follow(function, replica_id, worker))

    async def _follow(self, function: str, replica_id: str, worker: Followed) -> None:
        while not worker.done.is_set():
            try:
                memory, lines, dropped = await worker.actor.status.remote()
            except Exception:  # the actor is going or gone: its exit is watched elsewhere
                break
            worker.memory = memory
            for line in lines:
                self.logbook.write(function, replica_id, line.stream, line.text)
            if dropped:
                self.logbook.write(
                    function, replica_id, "system", f"{dropped} log lines were dropped on the node"
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_INTERVAL):
                    await worker.done.wait()
        self._actors.pop(replica_id, None)

    def track(self, replica_id: str, actor: Any) -> None:
        """Hold `actor` until its replica is gone (close releases every one held)."""
        self._actors[replica_id] = actor

    def forget(self, replica_id: str, actor: Any) -> None:
        self._forget(replica_id, actor)

    def done_starting(self, replica_id: str) -> None:
        self._pending.pop(replica_id, None)

    def _forget(self, replica_id: str, actor: Any) -> None:
        self._actors.pop(replica_id, None)
        with contextlib.suppress(Exception):
            ray_api.kill(actor)

    def spawn(self, coroutine: Any) -> None:
        self._spawn(coroutine)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pending(self, function: str) -> list[Pending]:
        return [pending for name, pending in self._pending.values() if name == function]

    async def close(self) -> None:
        """Release every actor still held (their workers die with them)."""
        for replica_id, actor in list(self._actors.items()):
            self._forget(replica_id, actor)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def live_nodes() -> list[NodeRoom]:
    """The cluster's live nodes with their total and free resources and labels."""
    free = ray_api.free_resources_per_node()
    rooms = []
    for node in ray_api.nodes():
        if not node.get("Alive"):
            continue
        node_id = node["NodeID"]
        rooms.append(
            NodeRoom(
                address=node.get("NodeManagerAddress", node_id),
                total=dict(node.get("Resources", {})),
                free=dict(free.get(node_id, {})),
                labels={str(k): str(v) for k, v in (node.get("Labels") or {}).items()},
            )
        )
    return rooms


class NodeEnvironments:
    """On a cluster the node that runs a replica builds its function's environment (cached
    there by requirements hash): the gateway builds none."""

    async def ensure(self, spec: FunctionSpec) -> Environment:
        return Environment(key=spec.environment_key(), python=Path(sys.executable), path=None)
