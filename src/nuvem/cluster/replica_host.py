"""`ReplicaHost`: the node's side of one replica on a cluster.

The cluster engine (a Ray actor, see ray_runtime.py) places a host where the replica's
resources are; the host makes the function's code and environment ready on its node, opens
a port that only the gateway holding the replica's secret may use, and hands that very
connection to the worker process: calls then go gateway -> worker with no hop in between.
The host stays to watch the worker (exit code, memory, log lines) and to signal it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import socket
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nuvem.cluster import code_bundle, link
from nuvem.cluster.log_buffer import LogBuffer, LogLine
from nuvem.errors import BadRequest, Conflict
from nuvem.runtime.environment import EnvironmentBuilder
from nuvem.runtime.line_pump import pump_lines
from nuvem.runtime.process_stats import rss_bytes
from nuvem.runtime.worker_command import worker_argv, worker_environ
from nuvem.stack.function import FunctionSpec


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


class ReplicaHost:
    def __init__(self, node_ip: str, state_dir: Path) -> None:
        self.node_ip = node_ip
        self.state_dir = state_dir
        self.environments = EnvironmentBuilder(state_dir)
        self.process: asyncio.subprocess.Process | None = None
        self.logs = LogBuffer()
        self._listener: socket.socket | None = None
        self._secret = b""
        self._spec: FunctionSpec | None = None
        self._replica_id = ""
        self._argv: list[str] = []
        self._environ: dict[str, str] = {}
        self._pumps: set[asyncio.Task[None]] = set()

    async def prepare(
        self,
        spec: FunctionSpec,
        replica_id: str,
        code: bytes,
        digest: str,
        secret: bytes,
        inside: str = "",
    ) -> Endpoint:
        """Unpack the code, build or reuse the environment, open the replica's port; the
        function's folder is `inside` the bundle (a stack bundle holds several)."""
        if self._listener is not None or self.process is not None:
            raise Conflict(f"replica host of {replica_id} was prepared already")
        bundle = code_bundle.unpack(code, digest, self.state_dir / "code")
        relative = PurePosixPath(inside)
        folder = bundle.joinpath(*relative.parts)
        if relative.is_absolute() or ".." in relative.parts or not folder.is_dir():
            raise BadRequest(
                f"code bundle {digest[:12]} holds no function folder {inside!r}",
                "deploy the function again",
            )
        spec = spec.model_copy(update={"root": str(folder)})
        env = await self.environments.ensure(spec)
        self._spec, self._replica_id, self._secret = spec, replica_id, secret
        self._environ = worker_environ(spec, env, replica_id, self.state_dir / "models")
        self._argv = worker_argv(spec, env, fd=-1)  # the descriptor is known once accepted
        self._listener = link.listen(self.node_ip)
        return Endpoint(self.node_ip, self._listener.getsockname()[1])

    async def serve(self, wait_s: float) -> int:
        """Wait for the gateway's authenticated connection and start the worker on it; the
        worker's pid."""
        if self._listener is None or self._spec is None:
            raise Conflict("the replica host must be prepared before it serves")
        try:
            sock = await link.accept(self._listener, self._secret, wait_s)
        finally:
            self._listener.close()
            self._listener = None
        try:
            argv = list(self._argv)
            argv[argv.index("--fd") + 1] = str(sock.fileno())
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                pass_fds=(sock.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._environ,
                cwd=self._spec.root,
                start_new_session=True,
            )
        finally:
            sock.close()  # the worker has its own copy; ours would keep the link open
        for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr")):
            assert stream is not None
            pump = asyncio.create_task(pump_lines(stream, functools.partial(self.logs.keep, name)))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)
        return self.process.pid

    async def wait(self) -> int:
        """The worker's exit code, once it has exited (negative: the signal that ended it)."""
        if self.process is None:
            raise Conflict("the replica host has no worker to wait for")
        code = await self.process.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        return code

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def terminate(self) -> None:
        """Drain: the worker finishes the calls it has, then exits."""
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def rss(self) -> int | None:
        """The worker's resident memory in bytes, for the gateway's memory-limit watchdog."""
        if self.process is None or self.process.returncode is not None:
            return None
        return rss_bytes(self.process.pid)

    def collect_logs(self) -> tuple[list[LogLine], int]:
        """The log lines since the last collection, and how many were dropped meanwhile."""
        return self.logs.collect()

    async def close(self) -> None:
        """Kill the worker (if any) and stop listening: the host is going away."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self.process is not None and self.process.returncode is None:
            self.kill()
            await self.process.wait()
