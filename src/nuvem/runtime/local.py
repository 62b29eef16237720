"""The embedded runtime: each replica is a worker process on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
from pathlib import Path

from nuvem.errors import Unavailable
from nuvem.runtime import protocol
from nuvem.runtime.environment import Environment
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.model_env import batching_args, model_environ
from nuvem.runtime.protocol import ErrorMeta, HelloMeta, Kind
from nuvem.runtime.replica import Replica, exit_cause
from nuvem.runtime.replica_state import ReplicaState
from nuvem.runtime.warm_pool import WarmPool
from nuvem.stack.function import FunctionSpec

SETUP_TIMEOUT = 300.0


class SetupFailed(Unavailable):
    """The handler could not be loaded or its setup() raised."""


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
            process = await self.pool.spawn(
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
        assert process.stdout is not None
        assert process.stderr is not None
        for stream, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
            pump = asyncio.create_task(self._pump(stream, spec.name, replica_id, name))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)
        loop = asyncio.get_running_loop()
        first: asyncio.Future[protocol.Frame | None] = loop.create_future()

        def on_first(frame: protocol.Frame) -> None:
            if not first.done():
                first.set_result(frame)

        def on_lost(exc: Exception | None) -> None:
            if not first.done():
                first.set_result(None)

        try:
            _, connection = await loop.create_unix_connection(
                lambda: protocol.FrameProtocol(on_first, on_lost), sock=ours
            )
        except BaseException:
            ours.close()
            await _end(process)
            raise
        try:
            return await self._handshake(spec, replica_id, process, connection, first)
        except BaseException:
            # Failed or cancelled mid-start: no half-started process or socket may linger.
            connection.close()
            await _end(process)
            raise

    async def _handshake(
        self,
        spec: FunctionSpec,
        replica_id: str,
        process: asyncio.subprocess.Process,
        connection: protocol.FrameProtocol,
        first: asyncio.Future[protocol.Frame | None],
    ) -> Replica:
        try:
            async with asyncio.timeout(self.setup_timeout):
                frame = await first
        except TimeoutError:
            raise SetupFailed(
                f"function {spec.name!r}: handler setup took longer than {self.setup_timeout:.0f}s",
                "make setup() faster or load large files lazily",
            ) from None
        if frame is None:
            code = await process.wait()
            raise SetupFailed(
                f"function {spec.name!r}: replica {replica_id} {exit_cause(code)} during setup",
                f"see `nuvem logs {spec.name}`",
            )
        if frame.kind is Kind.SETUP_FAILED:
            error = ErrorMeta.load(frame.meta)
            raise SetupFailed(
                f"function {spec.name!r}: handler {spec.handler!r} failed to load: {error.message}",
                f"fix the handler in {spec.root}; `nuvem logs {spec.name}` shows the traceback",
            )
        hello = HelloMeta.load(frame.meta)
        self.logbook.write(
            spec.name,
            replica_id,
            "system",
            f"replica ready (pid {hello.pid}, Python {hello.python})",
        )
        replica = Replica(replica_id, spec.name, spec.fingerprint(), process, connection)
        replica.state = ReplicaState.READY
        replica.attach()
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


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()
