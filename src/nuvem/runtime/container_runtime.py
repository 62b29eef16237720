"""`ContainerRuntime`: replicas of image functions, one container each, on this machine.

A start builds the image first for a function with `build:` (runtime/image_builder.py),
checks the image is there, runs the container with the function's limits on a
loopback port of its own, and waits until it is ready (its health path answers 2xx, or,
without one, its port accepts connections), never longer than `ready_timeout`: an image
that never gets there is a SetupFailed naming the function, the image and what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from nuvem.runtime.container_engine import (
    Attached,
    ContainerEngine,
    ContainerRun,
    EngineError,
    Labelled,
)
from nuvem.runtime.container_replica import ContainerReplica, container_cause
from nuvem.runtime.environment import Environment
from nuvem.runtime.http_connection import HttpFailed
from nuvem.runtime.http_pool import HttpPool
from nuvem.runtime.image_builder import ImageBuilder
from nuvem.runtime.line_pump import pump_lines
from nuvem.runtime.registry_access import RegistryAccess, registry_hint
from nuvem.runtime.replica import Pending, Replica, SetupFailed
from nuvem.stack.function import FunctionSpec

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
POLL = 0.02  # seconds between readiness probes: a container starts in ~0.2 s here
PROBE_TIMEOUT = 2.0
DISCARD_TRIES = 3
DISCARD_WAIT = 5.0  # seconds for a removed container's attached process to end
LOG_TAIL = 5  # lines of the container's output quoted when it fails to start
# Labels on every container: which state folder's gateway started it, and which gateway
# (its instance) that was, so a restart finds what a killed predecessor left running.
OWNER_LABEL = "nuvem.state"
GATEWAY_LABEL = "nuvem.gateway"
# of-watchdog's settings for how long a call may take (its config/config.go).
WATCHDOG_TIMEOUTS = ("read_timeout", "write_timeout", "exec_timeout")


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Launched:
    """A container that is ready, with the pool its readiness was probed on."""

    run: ContainerRun
    attached: Attached
    pool: HttpPool


class LineSink(Protocol):
    """Where a container's output lines go: the gateway's LogBook, or a node's buffer."""

    def write(self, name: str, instance: str, stream: str, text: str) -> None: ...


def registry_of(image: str) -> str | None:
    """The registry host an image reference names, as Docker reads one (a first part with a
    dot or a port); None for a local name (`localhost/x`, `x:1`)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first):
        return first
    return None


def container_env(spec: FunctionSpec, replica_id: str) -> dict[str, str]:
    """What a function container sees: its stack env, which function and replica it is
    (an image reads `fprocess` and its other watchdog settings from env: as OpenFaaS), and
    of-watchdog's timeouts set to the function's: the watchdog's own default (10 s) would
    end calls the function's timeout still allows. env: overrides them."""
    timeout = f"{spec.timeout:g}s"
    watchdog = dict.fromkeys(WATCHDOG_TIMEOUTS, timeout)
    return {**watchdog, "NUVEM_FUNCTION": spec.name, "NUVEM_REPLICA": replica_id, **spec.env}


class ContainerRuntime:
    def __init__(
        self,
        engine: ContainerEngine,
        logbook: LineSink,
        ready_timeout: float = READY_TIMEOUT,
        images: ImageBuilder | None = None,
        host_ip: str = "127.0.0.1",  # where containers' ports are published and probed
        owner: str | None = None,  # the gateway's state folder: labels its containers
        registry: RegistryAccess | None = None,  # the stack's: how its images are pulled
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.host_ip = host_ip
        self.logbook = logbook
        self.images = images if images is not None else ImageBuilder(engine, registry=registry)
        self.ready_timeout = ready_timeout
        # In container names: two gateways (or test runs) on one machine both have an
        # echo-1, and must not stop each other's containers.
        self.instance = os.urandom(3).hex()
        self.owner = owner
        self._pumps: set[asyncio.Task[None]] = set()

    async def prepare(self, spec: FunctionSpec) -> None:
        """Build a `build:` function's image ahead of its first start (the controller asks
        at a deploy that starts no replica)."""
        if spec.build is not None:
            await self.images.ensure(spec)

    def pending(self, function: str) -> list[Pending]:
        return []

    async def sweep(self) -> list[Labelled]:
        """Remove the containers an earlier gateway of the same state folder left behind
        (it was killed before it could stop them: its attached `podman run` processes
        died with it, the containers did not), and return them. Run before the first
        start; this gateway's own containers are never among them."""
        if self.owner is None:
            return []
        found = await self.engine.labelled(OWNER_LABEL, self.owner)
        left = [c for c in found if c.labels.get(GATEWAY_LABEL) != self.instance]
        for container in left:
            await self.engine.remove(container.name)
        return left

    async def close(self) -> None:
        for task in list(self._pumps):
            task.cancel()
        await self.engine.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> Replica:
        launched = await self.launch(spec, replica_id)
        replica = ContainerReplica(
            replica_id,
            spec.name,
            spec.fingerprint(),
            self.engine,
            launched.run,
            launched.attached,
            launched.pool,
        )
        if spec.build is not None:
            self._spawn(self._ended(spec.name, replica))
        return replica

    async def launch(self, spec: FunctionSpec, replica_id: str) -> Launched:
        """Run the function's container and wait until it is ready (a cluster node does
        this for a gateway elsewhere, then hands the container over)."""
        assert spec.serves_http, "only image functions are started here"
        image = spec.image if spec.image is not None else await self.images.ensure(spec)
        await self._image(spec, image, replica_id)
        run = ContainerRun(
            name=f"nuvem-{replica_id}-{self.instance}",
            image=image,
            host_port=_free_port(self.host_ip),
            host_ip=self.host_ip,
            port=spec.container_port,
            env=container_env(spec, replica_id),
            cpus=spec.resources.cpu,
            memory=spec.resources.memory,
            labels=self._labels(spec.name, replica_id),
        )
        try:
            attached = await self.engine.run(run)
        except (EngineError, OSError) as error:
            raise SetupFailed(
                f"function {spec.name!r}: {self.engine.name} could not run {image!r}: {error}",
                f"check that `{self.engine.name}` works on this machine (docs/containers.md)",
            ) from None
        for stream, name in ((attached.stdout, "stdout"), (attached.stderr, "stderr")):
            if stream is not None:
                write = functools.partial(self.logbook.write, spec.name, replica_id, name)
                self._spawn(pump_lines(stream, write))
        pool = HttpPool(run.host_ip, run.host_port)
        try:
            await self._ready(spec, run, attached, pool)
        except BaseException:
            await pool.close()
            await self._discard(run, attached)
            raise
        self.logbook.write(
            spec.name,
            replica_id,
            "system",
            f"container {run.name} ready on {run.host_ip}:{run.host_port}",
        )
        if spec.build is not None:
            # In the background: the replica serves now, the store's cleanup can wait.
            self._spawn(self._served(spec.name, replica_id, image))
        return Launched(run, attached, pool)

    async def _served(self, function: str, replica_id: str, image: str) -> None:
        """A replica of a built image serves: the function's older images go (all but
        the one before it), and its log says which."""
        await self._prune(
            function,
            replica_id,
            self.images.served(function, image),
            f"kept {image} and the one before it",
        )

    async def _ended(self, function: str, replica: Replica) -> None:
        """Once the replica's container is removed, an earlier image it kept in the store
        (the engine refused its removal) goes, rather than waiting for the next start."""
        await replica.wait_dead()
        await self._prune(
            function, replica.id, self.images.retry(function), "their last container is gone"
        )

    async def _prune(
        self, function: str, replica_id: str, pruning: Awaitable[list[str]], why: str
    ) -> None:
        try:
            removed = await pruning
        except Exception:  # the store's cleanup must never touch serving
            log.exception("pruning the earlier images of %s failed", function)
            return
        if removed:
            self.logbook.write(
                function,
                replica_id,
                "system",
                f"removed earlier images {', '.join(removed)} ({why})",
            )

    def _labels(self, function: str, replica_id: str) -> dict[str, str]:
        labels = {"nuvem.function": function, "nuvem.replica": replica_id}
        labels[GATEWAY_LABEL] = self.instance
        if self.owner is not None:
            labels[OWNER_LABEL] = self.owner
        return labels

    async def _image(self, spec: FunctionSpec, image: str, replica_id: str) -> None:
        """Make sure the engine has `image`: one from a registry is pulled when missing."""
        if await self.engine.exists(image):
            return
        registry = registry_of(image)
        if registry is None:
            raise SetupFailed(
                f"function {spec.name!r}: image {image!r} is not in {self.engine.name}'s "
                "image store",
                f"build it (`{self.engine.name} build -t {image} .`), load it, or fix image: "
                "in the stack file (an image from a registry, e.g. registry.example:5000/"
                "name:tag, is pulled)",
            )
        self.logbook.write(spec.name, replica_id, "system", f"pulling {image} from {registry}")
        access = self.registry if self.registry is not None and self.registry.owns(image) else None
        try:
            await self.engine.pull(image, access)
        except (EngineError, OSError) as error:
            raise SetupFailed(
                f"function {spec.name!r}: {self.engine.name} could not pull {image!r} from "
                f"{registry}: {error}",
                registry_hint(str(error), image, registry),
            ) from None

    async def _discard(self, run: ContainerRun, attached: Attached) -> None:
        """Remove a container that failed to start, and make sure it stays removed: one
        still being created when the first removal ran would start after it (seen under
        load), so remove again until its attached process has ended."""
        for _ in range(DISCARD_TRIES):
            with contextlib.suppress(Exception):
                await self.engine.remove(run.name)
            try:
                await asyncio.wait_for(asyncio.shield(attached.wait()), DISCARD_WAIT)
            except TimeoutError:
                continue
            with contextlib.suppress(Exception):
                await self.engine.remove(run.name)
            return

    async def _ready(
        self,
        spec: FunctionSpec,
        run: ContainerRun,
        attached: Attached,
        pool: HttpPool,
    ) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "nothing accepted a connection"
        while time.monotonic() < deadline:
            if attached.returncode is not None:
                await self._exited(spec, run, attached.returncode)
            probe = await self._probe(spec, run, pool)
            if probe is None:
                return
            last = probe
            await asyncio.sleep(POLL)
        what = f"health path {spec.health}" if spec.health else f"port {run.port}"
        raise SetupFailed(
            f"function {spec.name!r}: image {run.image!r} was not ready within "
            f"{self.ready_timeout:g}s: {what}: {last}",
            (
                f"make {spec.health} answer 2xx once the server is up, or fix health:"
                if spec.health
                else f"make the image listen on 0.0.0.0:{run.port}, or set port: to where it does"
            )
            + f"; `nuvem logs {spec.name}` shows its output",
        )

    async def _probe(self, spec: FunctionSpec, run: ContainerRun, pool: HttpPool) -> str | None:
        """None once ready, else what the probe found."""
        if spec.health is None:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(run.host_ip, run.host_port), PROBE_TIMEOUT
                )
            except (OSError, TimeoutError) as error:
                return f"nothing accepted a connection ({type(error).__name__})"
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return None
        try:
            answer = await asyncio.wait_for(
                pool.request("GET", spec.health, [], b""), PROBE_TIMEOUT
            )
        except TimeoutError:
            return f"no answer within {PROBE_TIMEOUT:g}s"
        except HttpFailed as error:
            return f"no answer ({error})"
        status = answer.status
        if 200 <= status < 300:
            return None
        return f"answered {status}"

    async def _exited(self, spec: FunctionSpec, run: ContainerRun, code: int) -> None:
        exit = None
        with contextlib.suppress(Exception):
            exit = await self.engine.inspect(run.name)
        tail = ""
        with contextlib.suppress(Exception):
            lines = (await self.engine.logs(run.name)).strip().splitlines()[-LOG_TAIL:]
            tail = (": " + " | ".join(lines)) if lines else ""
        raise SetupFailed(
            f"function {spec.name!r}: image {run.image!r}: "
            f"{container_cause(exit, run.memory, code)} before it was ready{tail}",
            f"see `nuvem logs {spec.name}`; run `{self.engine.name} run --rm {run.image}` "
            "to try it by hand",
        )
