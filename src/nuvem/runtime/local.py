"""The embedded runtime: each replica is a worker process on this machine, spoken to over
a socketpair (`FramedReplica` over a `LocalProcess`)."""

from __future__ import annotations

import asyncio
import functools
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from nuvem.runtime import protocol
from nuvem.runtime.devices import gpu_count
from nuvem.runtime.environment import Environment
from nuvem.runtime.framed_replica import connect_replica
from nuvem.runtime.gpu_slots import GpuSlots
from nuvem.runtime.line_pump import pump_lines
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.replica import Pending, Replica, SetupFailed
from nuvem.runtime.warm_pool import WarmPool
from nuvem.runtime.worker_command import worker_argv, worker_environ
from nuvem.runtime.worker_process import LocalProcess
from nuvem.stack.function import FunctionSpec
from nuvem.startup_marks import mark

SETUP_TIMEOUT = 300.0
PRESTART_MAX = 4  # idle workers one function gets before the gateway runs


class LocalRuntime:
    def __init__(
        self,
        logbook: LogBook,
        setup_timeout: float = SETUP_TIMEOUT,
        model_cache: Path | None = None,
        warm_workers: int = 1,
        gpus: int | None = None,  # this machine's, unless told
        pool: WarmPool | None = None,  # one `nuvem up` already pre-started workers in
    ) -> None:
        self.logbook = logbook
        self.model_cache = model_cache  # where models' downloaded weights are kept
        self.setup_timeout = setup_timeout
        self._pumps: set[asyncio.Task[None]] = set()  # held so the loop does not drop them
        # Pre-started workers for fast cold starts; spawns the usual way when none matches.
        self.pool = pool if pool is not None else WarmPool(warm_workers)
        self.gpus = GpuSlots(gpu_count() if gpus is None else gpus)

    def pending(self, function: str) -> list[Pending]:
        return []  # one machine: a start that does not fit fails at once, with the reason

    async def close(self) -> None:
        """End the pre-started workers (replicas are the controller's to stop)."""
        await self.pool.close()

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> Replica:
        """Spawn a worker and wait until its handler is loaded; raise SetupFailed if not."""
        devices: tuple[int, ...] | None = None
        if spec.resources.gpu > 0:
            devices = self.gpus.take(replica_id, spec.resources.gpu)
            if devices is None:
                raise SetupFailed(
                    f"function {spec.name!r}: no GPU room for replica {replica_id}: "
                    f"{self.gpus.shortage(spec.resources.gpu)}",
                    "scale down another GPU function, or lower resources.gpu (a fraction "
                    "shares a device)",
                )
        try:
            replica = await self._start(spec, env, replica_id, devices)
        except BaseException:
            self.gpus.release(replica_id)
            raise
        if devices:
            self._spawn(self._release_gpus(replica))
        return replica

    async def _release_gpus(self, replica: Replica) -> None:
        await replica.wait_dead()
        self.gpus.release(replica.id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)

    async def _start(
        self,
        spec: FunctionSpec,
        env: Environment,
        replica_id: str,
        devices: tuple[int, ...] | None,
    ) -> Replica:
        began = time.monotonic()
        mark("replica ordered")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv, options = spawn_order(spec, env, replica_id, self.model_cache, theirs, devices)
        try:
            spawned = await self.pool.spawn(*argv, **options)
        finally:
            theirs.close()
        assert spawned.stdout is not None
        assert spawned.stderr is not None
        for stream, name in ((spawned.stdout, "stdout"), (spawned.stderr, "stderr")):
            write = functools.partial(self.logbook.write, spec.name, replica_id, name)
            self._spawn(pump_lines(stream, write))

        async def connect(
            factory: Callable[[], protocol.FrameProtocol],
        ) -> protocol.FrameProtocol:
            try:
                _, connection = await asyncio.get_running_loop().create_unix_connection(
                    factory, sock=ours
                )
            except BaseException:
                ours.close()
                raise
            return connection

        try:
            replica, hello = await connect_replica(
                spec, replica_id, LocalProcess(spawned), connect, self.setup_timeout
            )
        finally:
            self.pool.replenish(*argv, **options)
        mark("replica ready")
        self.logbook.write(
            spec.name,
            replica_id,
            "system",
            f"replica ready (pid {hello.pid}, Python {hello.python}, "
            f"started in {time.monotonic() - began:.2f} s)",
        )
        return replica


def spawn_order(
    spec: FunctionSpec,
    env: Environment,
    replica_id: str,
    model_cache: Path | None,
    sock: socket.socket,
    devices: tuple[int, ...] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """The command line and `create_subprocess_exec` options of a replica's worker, which
    gets `sock` (its end of the socketpair)."""
    options: dict[str, Any] = {
        "pass_fds": (sock.fileno(),),
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.PIPE,
        "env": worker_environ(spec, env, replica_id, model_cache, gpus=devices),
        "cwd": spec.root,
        "start_new_session": True,  # Ctrl-C in the terminal reaches the gateway only
    }
    return worker_argv(spec, env, sock.fileno()), options


def prestart(pool: WarmPool, spec: FunctionSpec, model_cache: Path | None) -> int:
    """Start, now and without an event loop, the idle workers `spec`'s first replicas will
    take (one per replica it starts with). Only for a function that runs in the platform's
    own environment on the CPU: another one's interpreter is not known before its
    environment is built, and a GPU replica's devices are not known before it is placed."""
    if spec.environment_key() is not None or spec.resources.gpu > 0:
        return 0
    env = Environment(key=None, python=Path(sys.executable), path=None)
    # An autoscaled function starts one replica even with min 0 (Controller.deploy).
    count = min(max(spec.scaling.min, 1), PRESTART_MAX)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        argv, options = spawn_order(spec, env, "prestart", model_cache, theirs)
        return pool.prestart(count, *argv, **options)
