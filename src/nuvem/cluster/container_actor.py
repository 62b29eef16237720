"""`ContainerActor`: the Ray actor that runs one image function's container on its node.

Ray places it on a node that advertises a container engine (the `nuvem.io/containers`
label, set by `nuvem node join`), with the function's CPUs and memory reserved. The actor
runs the container through that node's engine, published on the node's loopback only, and
waits until it is ready; then it relays to it from the node's address connections that
open with the replica's signed preamble (cluster/container_relay.py), and the gateway calls
the container over HTTP through that relay, not through Ray. The actor stays to report the
container's exit, to stop, kill, inspect and remove it, and to hand its output lines to the
gateway.

This module is imported on the nodes by Ray; it must not import the gateway.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from nuvem.cluster import ray_api
from nuvem.cluster.container_relay import ContainerRelay
from nuvem.cluster.log_buffer import LogBuffer, LogLine
from nuvem.config import Settings
from nuvem.errors import Conflict, NuvemError
from nuvem.runtime.container_engine import Attached, ContainerEngine, ContainerExit, ContainerRun
from nuvem.runtime.container_runtime import ContainerRuntime
from nuvem.runtime.engine_choice import choose_engine, no_engine
from nuvem.runtime.registry_access import RegistryAccess
from nuvem.stack.function import FunctionSpec


@dataclass(frozen=True, slots=True)
class Started:
    """The container is ready (`run` has its loopback port on the node): the node's
    address and the relay's port there, where the gateway calls it, and which engine runs
    it."""

    run: ContainerRun
    pid: int
    engine: str
    node_ip: str
    relay_port: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The container could not be made ready; said as the start's SetupFailed."""

    message: str
    hint: str


class ContainerActor:
    """Made remote with `ray.remote(...)` by the gateway; plain Python, so it is testable."""

    def __init__(self, node_ip: str | None = None, engine: ContainerEngine | None = None) -> None:
        self.node_ip = node_ip or ray_api.node_ip()
        self.logs = LogBuffer()
        self._engine = engine
        self._runtime: ContainerRuntime | None = None
        self._attached: Attached | None = None
        self._relay: ContainerRelay | None = None

    async def start(
        self,
        spec_json: str,
        replica_id: str,
        secret: bytes,
        registry: RegistryAccess | None = None,
    ) -> Started | Refused:
        """Run the container of `spec_json` (an `image:` function: the gateway resolved a
        `build:` one to its registry's tag), pulling its image with `registry`'s access
        when the node lacks it, and relay to it connections signed with `secret` (the
        replica's, from the gateway)."""
        if self._runtime is not None:
            raise Conflict(f"the container actor of {replica_id} was started already")
        spec = FunctionSpec.model_validate_json(spec_json)
        settings = Settings.from_env()
        try:
            engine = self._engine or choose_engine("auto", settings.docker_host)
        except NuvemError as error:
            return Refused(error.message, error.hint)
        if engine is None:
            message, hint = no_engine(settings.docker_host)
            return Refused(f"node {self.node_ip}: {message}", hint)
        # Loopback: only this node's processes reach the port, the relay among them.
        self._runtime = ContainerRuntime(engine, self.logs, host_ip="127.0.0.1", registry=registry)
        try:
            launched = await self._runtime.launch(spec, replica_id)
        except NuvemError as error:
            return Refused(error.message, error.hint)
        # The gateway calls with its own pool; this one only saw it get ready.
        await launched.pool.close()
        self._attached = launched.attached
        run = launched.run
        relay = ContainerRelay(
            secret,
            replica_id,
            run.host_port,
            lambda text: self.logs.write(spec.name, replica_id, "system", text),
            target_host=run.host_ip,
        )
        try:
            port = await relay.start(self.node_ip)
        except OSError as error:
            await self._runtime.engine.remove(run.name)
            return Refused(
                f"node {self.node_ip}: could not listen for the gateway's calls to "
                f"{replica_id}: {error}",
                "check the node's address (nuvem node join --node-ip)",
            )
        self._relay = relay
        return Started(run, launched.attached.pid, engine.name, self.node_ip, port)

    def _running(self) -> tuple[ContainerRuntime, Attached]:
        if self._runtime is None or self._attached is None:
            raise Conflict("the container actor has no container yet")
        return self._runtime, self._attached

    async def wait(self) -> int:
        """The attached side's exit code, once the container has ended."""
        return await self._running()[1].wait()

    async def inspect(self, name: str) -> ContainerExit | None:
        return await self._running()[0].engine.inspect(name)

    async def stop(self, name: str, grace: float) -> None:
        await self._running()[0].engine.stop(name, grace)

    async def kill(self, name: str) -> None:
        await self._running()[0].engine.kill(name)

    async def remove(self, name: str) -> None:
        await self._close_relay()
        await self._running()[0].engine.remove(name)

    def refusals(self) -> int:
        """Connections the relay refused so far."""
        return self._relay.refusals if self._relay is not None else 0

    async def _close_relay(self) -> None:
        if self._relay is not None:
            relay, self._relay = self._relay, None
            await relay.close()

    def status(self) -> tuple[int | None, list[LogLine], int]:
        """What the gateway polls about once a second: no memory reading (the engine
        enforces the limit), new log lines, dropped lines."""
        lines, dropped = self.logs.collect()
        return None, lines, dropped

    async def close(self) -> None:
        await self._close_relay()
        if self._runtime is not None:
            with contextlib.suppress(Exception):
                await self._runtime.close()
