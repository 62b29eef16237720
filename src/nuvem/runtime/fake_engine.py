"""`FakeEngine`: a container engine in this process, for tests.

An "image" is an ASGI app; running it serves the app with uvicorn on the container's host
port (real HTTP on loopback), so the container runtime and its replicas are exercised as
with podman, without an engine installed. `exit(name, code, oom=...)` ends a container as
a crash or the memory limit would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from nuvem.runtime.container_engine import (
    Attached,
    BuildError,
    ContainerExit,
    ContainerRun,
    EngineError,
    Labelled,
    StoredImage,
    repository_of,
)

if TYPE_CHECKING:
    from nuvem.runtime.registry_access import RegistryAccess

App = Any  # an ASGI application


@dataclass
class FakeContainer:
    run: ContainerRun
    server: uvicorn.Server
    serving: asyncio.Task[None]
    stdout: asyncio.StreamReader = field(default_factory=asyncio.StreamReader)
    stderr: asyncio.StreamReader = field(default_factory=asyncio.StreamReader)
    ended: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    oom_killed: bool = False
    output: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return 0

    @property
    def returncode(self) -> int | None:
        return self.ended.result() if self.ended.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self.ended)

    def say(self, text: str) -> None:
        """Write a line to its stdout, as the image's process would."""
        self.output.append(text)
        self.stdout.feed_data(text.encode() + b"\n")


class FakeEngine:
    name = "fake"

    def __init__(self, images: dict[str, App] | None = None) -> None:
        self.images: dict[str, App] = dict(images or {})
        self.containers: dict[str, FakeContainer] = {}
        self.builds: list[tuple[Path, str, str, dict[str, str]]] = []
        # What a registry would serve: `pull` copies one into `images`.
        self.registry: dict[str, App] = {}
        self.pulls: list[str] = []
        self.pushes: list[str] = []
        self.accesses: list[RegistryAccess | None] = []  # each pull's and push's
        # When each image was made: a counter, so no two builds tie as seconds would.
        self._clock = itertools.count(1)
        self.created: dict[str, float] = dict.fromkeys(self.images, 0.0)
        self.removed_images: list[str] = []

    async def exists(self, image: str) -> bool:
        return image in self.images

    async def pull(self, image: str, access: RegistryAccess | None = None) -> None:
        self.pulls.append(image)
        self.accesses.append(access)
        if image not in self.registry:
            raise EngineError(f"pull {image}: manifest unknown")
        self.images[image] = self.registry[image]
        self.created[image] = next(self._clock)

    async def push(self, image: str, access: RegistryAccess) -> None:
        self.pushes.append(image)
        self.accesses.append(access)
        if image not in self.images:
            raise EngineError(f"push {image}: image not known")
        self.registry[image] = self.images[image]

    async def close(self) -> None:
        for name in list(self.containers):
            await self.exit(name, 137)

    async def run(self, run: ContainerRun) -> Attached:
        app = self.images.get(run.image)
        if app is None:
            raise EngineError(f"{run.image}: image not known")
        config = uvicorn.Config(
            app, host=run.host_ip, port=run.host_port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        serving = asyncio.get_running_loop().create_task(server.serve())
        container = FakeContainer(run, server, serving)
        self.containers[run.name] = container
        container.say(f"started {run.image}")
        return container

    async def exit(self, name: str, code: int, oom: bool = False) -> None:
        """End container `name` with exit `code`, as if killed by its memory limit when
        `oom`."""
        container = self.containers.get(name)
        if container is None or container.ended.done():
            return
        container.server.should_exit = True
        with contextlib.suppress(Exception):
            await container.serving
        container.oom_killed = oom
        container.stdout.feed_eof()
        container.stderr.feed_eof()
        container.ended.set_result(code)

    async def stop(self, name: str, grace: float) -> None:
        await self.exit(name, 143)

    async def kill(self, name: str) -> None:
        await self.exit(name, 137)

    async def inspect(self, name: str) -> ContainerExit | None:
        container = self.containers.get(name)
        if container is None:
            return None
        return ContainerExit(container.returncode, container.oom_killed)

    async def labelled(self, key: str, value: str) -> list[Labelled]:
        return [
            Labelled(name, dict(container.run.labels))
            for name, container in self.containers.items()
            if container.run.labels.get(key) == value
        ]

    async def logs(self, name: str) -> str:
        container = self.containers.get(name)
        return "".join(line + "\n" for line in container.output) if container else ""

    async def stored_images(self, repository: str) -> list[StoredImage]:
        return [
            StoredImage(ref, f"fake-{ref}", self.created.get(ref, 0.0))
            for ref in self.images
            if repository_of(ref) == repository
        ]

    async def remove_image(self, ref: str) -> bool:
        """As podman and Docker do: an image a container uses (even an ended one not yet
        removed) stays."""
        if any(container.run.image == ref for container in self.containers.values()):
            return False
        if self.images.pop(ref, None) is not None:
            self.removed_images.append(ref)
        self.created.pop(ref, None)
        return True

    async def remove(self, name: str) -> None:
        await self.exit(name, 137)
        self.containers.pop(name, None)

    async def build(
        self,
        context: Path,
        file: str,
        tag: str,
        args: dict[str, str],
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        """Record the build; `tag` then serves what the image named by args["FROM"] does."""
        self.builds.append((context, file, tag, dict(args)))
        source = args.get("FROM")
        if on_line is not None:
            on_line(f"STEP 1/1: FROM {source}")
        if source not in self.images:
            message = f"base image {source!r} not known"
            raise BuildError(f"build of {tag}: {message}", ["STEP 1/1: FROM {source}", message])
        self.images[tag] = self.images[source]
        self.created[tag] = next(self._clock)
