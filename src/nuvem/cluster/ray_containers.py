"""`RayContainers`: image function replicas on a Ray cluster, one container per replica.

Ray places a `ContainerActor` on a node with a container engine (its `nuvem.io/containers`
label) and the function's CPUs and memory; the actor runs the container through that
node's engine, published on the node's loopback, and relays to it from the node's address
the connections that open with the replica's signed preamble. The gateway calls the
container through that relay over HTTP, on its own pool (each new connection signed with a
secret made here for the replica), as it calls a container on this machine: the replica
is a `ContainerReplica` whose engine and attached side are the actor's.

It shares the Ray runtime's driver, placement wait, pending reasons and actor book.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from typing import Any

from nuvem.cluster import ray_api
from nuvem.cluster.container_actor import ContainerActor, Refused, Started
from nuvem.cluster.container_relay import relay_refusal
from nuvem.cluster.placement import actor_options
from nuvem.cluster.ray_runtime import RayRuntime, first_line, loss_of
from nuvem.cluster.relay_preamble import signer
from nuvem.runtime.container_engine import ContainerExit
from nuvem.runtime.container_replica import ContainerReplica
from nuvem.runtime.environment import Environment
from nuvem.runtime.http_pool import HttpPool
from nuvem.runtime.image_builder import ImageBuilder
from nuvem.runtime.registry_access import RegistryAccess
from nuvem.runtime.replica import Pending, Replica, SetupFailed
from nuvem.stack.function import FunctionSpec

log = logging.getLogger(__name__)

SETUP_TIMEOUT = 300.0  # a pull from a registry may take minutes


class ActorEngine:
    """The node's engine, reached through the replica's actor. Implements
    `ContainerControl`; removing the container releases the actor (and so the resources
    it holds on its node)."""

    def __init__(self, actor: Any, name: str) -> None:
        self.actor = actor
        self.name = name

    async def stop(self, name: str, grace: float) -> None:
        with contextlib.suppress(*ray_api.actor_died_errors()):
            await self.actor.stop.remote(name, grace)

    async def kill(self, name: str) -> None:
        with contextlib.suppress(*ray_api.actor_died_errors()):
            await self.actor.kill.remote(name)

    async def inspect(self, name: str) -> ContainerExit | None:
        found: ContainerExit | None = await self.actor.inspect.remote(name)
        return found

    async def remove(self, name: str) -> None:
        try:
            await self.actor.remove.remote(name)
        finally:
            with contextlib.suppress(Exception):
                ray_api.kill(self.actor)


class ActorAttached:
    """The container's end as its actor reports it. Implements `Attached`; `lost` is set
    when the actor (its node) is gone, which says more than any exit code."""

    def __init__(self, actor: Any, pid: int, node: str) -> None:
        self.actor = actor
        self.pid = pid
        self.node = node
        self.returncode: int | None = None
        self.stdout: asyncio.StreamReader | None = None  # lines come by `status` instead
        self.stderr: asyncio.StreamReader | None = None
        self.lost: str | None = None
        self.memory: int | None = None
        self.done = asyncio.Event()
        self._exit = asyncio.get_running_loop().create_task(self._wait())

    async def _wait(self) -> None:
        try:
            self.returncode = int(await self.actor.wait.remote())
        except ray_api.actor_died_errors() as exc:
            self.lost = f"was lost with its node {self.node} ({loss_of(exc)})"
            self.returncode = -1
        finally:
            self.done.set()

    async def wait(self) -> int:
        await asyncio.shield(self._exit)
        assert self.returncode is not None
        return self.returncode


class RayContainers:
    """Implements `Runtime` for image functions on the Ray runtime's cluster."""

    def __init__(
        self,
        ray: RayRuntime,
        setup_timeout: float = SETUP_TIMEOUT,
        images: ImageBuilder | None = None,  # builds on the gateway's machine, pushes
        registry: RegistryAccess | None = None,
    ) -> None:
        self.ray = ray
        self.setup_timeout = setup_timeout
        self.images = images
        self.registry = registry

    async def prepare(self, spec: FunctionSpec) -> None:
        """Build and push a `build:` function's image ahead of its first start."""
        if spec.build is not None:
            await self._image_of(spec)

    async def _image_of(self, spec: FunctionSpec) -> FunctionSpec:
        """What a node runs: an `image:` function as it is; a `build:` one built here and
        pushed to the stack's registry, then named by its tag there (a node pulls it)."""
        if spec.build is None:
            return spec
        if self.images is None or self.images.registry is None:
            raise SetupFailed(
                f"function {spec.name!r}: its image is built from source (build:), and "
                "nodes get images from a registry, which the stack does not name",
                "add `registry: HOST:PORT` to the stack file (a registry every node "
                "reaches) and run a container engine on the gateway's machine, or build and "
                "push the image yourself and write image: instead",
            )
        tag = await self.images.ensure(spec)
        return spec.model_copy(update={"image": tag, "build": None})

    async def start(self, spec: FunctionSpec, env: Environment, replica_id: str) -> Replica:
        node_spec = await self._image_of(spec)
        await self.ray.driver()
        actor = ray_api.remote_actor(ContainerActor, actor_options(spec))
        self.ray.track(replica_id, actor)
        # The relay's key for this replica only; it reaches the node over Ray's
        # token-authenticated channel, as the framed link's secret does.
        secret = os.urandom(32)
        try:
            await self.ray.placed(spec, replica_id, actor)
            async with asyncio.timeout(self.setup_timeout):
                answer = await actor.start.remote(
                    node_spec.model_dump_json(), replica_id, secret, self.registry
                )
        except TimeoutError:
            self.ray.forget(replica_id, actor)
            raise SetupFailed(
                f"function {spec.name!r}: replica {replica_id}'s container was not ready "
                f"within {self.setup_timeout:.0f}s on its node",
                f"see `nuvem logs {spec.name}`",
            ) from None
        except (*ray_api.actor_died_errors(), ray_api.task_error()) as exc:
            self.ray.forget(replica_id, actor)
            raise SetupFailed(
                f"function {spec.name!r}: replica {replica_id} failed on its node: "
                f"{first_line(getattr(exc, 'cause', None) or exc)}",
                f"see `nuvem logs {spec.name}`",
            ) from None
        except BaseException:
            self.ray.forget(replica_id, actor)
            raise
        finally:
            self.ray.done_starting(replica_id)
        if isinstance(answer, Refused):
            self._collect(spec.name, replica_id, actor)
            raise SetupFailed(answer.message, answer.hint)
        assert isinstance(answer, Started)
        run, node = answer.run, answer.node_ip
        attached = ActorAttached(actor, answer.pid, node)
        replica = ContainerReplica(
            replica_id,
            spec.name,
            spec.fingerprint(),
            ActorEngine(actor, answer.engine),
            run,
            attached,
            HttpPool(node, answer.relay_port, preamble=signer(secret, replica_id)),
            node=node,
            refusal=functools.partial(relay_refusal, spec.name, replica_id, node),
        )
        self.ray.logbook.write(
            spec.name,
            replica_id,
            "system",
            f"container {run.name} ready on node {node} ({answer.engine}), on its "
            f"loopback port {run.host_port}, called through its relay at "
            f"{node}:{answer.relay_port}",
        )
        self.ray.follow(spec.name, replica_id, attached)
        if self.images is not None and spec.build is not None and node_spec.image is not None:
            # The gateway's own store keeps the built tags it pushed: prune it as a
            # single machine's is (the nodes' stores keep what they pulled).
            self.ray.spawn(self._served(spec.name, node_spec.image))
        return replica

    async def _served(self, function: str, image: str) -> None:
        assert self.images is not None
        try:
            await self.images.served(function, image)
        except Exception:  # the store's cleanup must never touch serving
            log.exception("pruning the earlier images of %s failed", function)

    def _collect(self, function: str, replica_id: str, actor: Any) -> None:
        """A refused start's lines (the container's output before it failed), then the
        actor is released."""

        async def collect() -> None:
            with contextlib.suppress(Exception):
                _, lines, _ = await actor.status.remote()
                for line in lines:
                    self.ray.logbook.write(function, replica_id, line.stream, line.text)
            self.ray.forget(replica_id, actor)

        self.ray.spawn(collect())

    def pending(self, function: str) -> list[Pending]:
        return []  # the Ray runtime keeps every pending replica, containers' too

    async def close(self) -> None:
        return None  # the Ray runtime releases every actor it holds
