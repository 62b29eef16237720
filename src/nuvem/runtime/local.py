"""The embedded runtime: each replica is a worker process on this machine, spoken to over
a socketpair (`FramedReplica` over a `LocalProcess`)."""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections.abc import Callable
from pathlib import Path

from nuvem.runtime import protocol
from nuvem.runtime.environment import Environment
from nuvem.runtime.framed_replica import connect_replica
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.model_env import batching_args, model_environ
from nuvem.runtime.replica import Replica
from nuvem.runtime.warm_pool import WarmPool
from nuvem.runtime.worker_process import LocalProcess
from nuvem.stack.function import FunctionSpec

SETUP_TIMEOUT = 300.0


class LocalRuntime:
    def __init__(
        self,
        logbook: LogBook,
        setup_timeout: float = SETUP_TIMEOUT,
        model_cache: Path | None = None,
        warm_workers: int = 1,
    ) -> None:
        self.logbook = logbook
        self.model_cache = model_cache  # where models' downloaded weights are kept
        self.setup_timeout = setup_timeout
        self._pumps: set[asyncio.Task[None]] = set()  # held so the loop does not drop them
        # Pre-started workers for fast cold starts; spawns the usual way when none matches.
        self.pool = WarmPool(warm_workers)

    async def close(self) -> None:
        """End the pre-started workers (replicas are the controller's to stop)."""
        await self.pool.close()

    def _environ(self, spec: FunctionSpec, env: Environment, replica_id: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("NUVEM_")}
        threads = str(max(1, math.ceil(spec.resources.cpu)))
        environ.update(
            {
                "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": threads,
                "MKL_NUM_THREADS": threads,
                "OPENBLAS_NUM_THREADS": threads,
                "NUVEM_FUNCTION": spec.name,
                "NUVEM_REPLICA": replica_id,
            }
        )
        if spec.resources.gpu == 0:
            environ["CUDA_VISIBLE_DEVICES"] = ""
        if env.path is not None:
            environ["VIRTUAL_ENV"] = str(env.path)
            environ.pop("PYTHONPATH", None)
        else:
            # The platform's interpreter: make sure `import nuvem` finds this very package.
            package_root = str(Path(__file__).resolve().parents[2])
            environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (package_root, environ.get("PYTHONPATH", "")) if p
            )
        environ.update(model_environ(spec, self.model_cache))
        environ.update(spec.env)
        return environ

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> Replica:
        """Spawn a worker and wait until its handler is loaded; raise SetupFailed if not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            spawned = await self.pool.spawn(
                str(env.python),
                "-m",
                "nuvem.runtime.worker",
                "--fd",
                str(theirs.fileno()),
                "--handler",
                spec.handler,
                "--root",
                spec.root,
                "--threads",
                str(spec.threads),
                *batching_args(spec),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._environ(spec, env, replica_id),
                cwd=spec.root,
                start_new_session=True,  # Ctrl-C in the terminal reaches the gateway only
            )
        finally:
            theirs.close()
        assert spawned.stdout is not None
        assert spawned.stderr is not None
        for stream, name in ((spawned.stdout, "stdout"), (spawned.stderr, "stderr")):
            pump = asyncio.create_task(self._pump(stream, spec.name, replica_id, name))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

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

        replica, hello = await connect_replica(
            spec, replica_id, LocalProcess(spawned), connect, self.setup_timeout
        )
        self.logbook.write(
            spec.name,
            replica_id,
            "system",
            f"replica ready (pid {hello.pid}, Python {hello.python})",
        )
        return replica

    async def _pump(
        self, stream: asyncio.StreamReader, function: str, replica_id: str, name: str
    ) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream's limit: take it in pieces
                line = await stream.read(65536)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\n")
            self.logbook.write(function, replica_id, name, text)
