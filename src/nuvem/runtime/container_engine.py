"""`ContainerEngine`: what the container runtime needs of podman (or Docker).

A replica's container runs attached: the engine's client process (`podman run` without
`-d`) lives as long as the container, carries its stdout and stderr, and exits with its
code, so the replica sees its end the way it sees a worker's. `podman.py` implements it
with podman's command line, `docker.py` with the Docker Engine API, `fake_engine.py` in
this process, for tests; `engine_choice.py` picks one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from nuvem.runtime.registry_access import RegistryAccess


@dataclass(frozen=True, slots=True)
class ContainerRun:
    """One container to start: a replica of an image function."""

    name: str  # unique per replica: stop, kill and inspect find it by this
    image: str
    host_port: int  # published on host_ip
    port: int  # where the image listens inside
    env: dict[str, str] = field(default_factory=dict)
    cpus: float | None = None
    memory: int | None = None  # bytes; the engine kills the container above it
    labels: dict[str, str] = field(default_factory=dict)
    # Loopback on one machine; a cluster node's own address, which the gateway calls.
    host_ip: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ContainerExit:
    """How a container ended, as the engine recorded it."""

    code: int | None  # None while it runs
    oom_killed: bool = False  # killed by its memory limit


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One tag in the engine's image store."""

    ref: str  # REPOSITORY:TAG
    id: str  # the image's id: two tags may name one image
    created: float  # unix seconds, when the image was built

    @property
    def repository(self) -> str:
        return repository_of(self.ref)


def repository_of(ref: str) -> str:
    """`ref` without its tag: `127.0.0.1:5000/nuvem/echo` of `127.0.0.1:5000/nuvem/echo:ab12`
    (a colon before the last slash is a registry's port, not a tag)."""
    name, colon, tag = ref.partition("@")[0].rpartition(":")
    if not colon or "/" in tag:
        return ref.partition("@")[0]
    return name


@dataclass(frozen=True, slots=True)
class Labelled:
    """A container the engine holds (running or not), found by its labels."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)


class Attached(Protocol):
    """The engine's process that runs one container in the foreground."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdout(self) -> asyncio.StreamReader | None: ...
    @property
    def stderr(self) -> asyncio.StreamReader | None: ...

    async def wait(self) -> int: ...


class ContainerControl(Protocol):
    """What a running replica needs of the engine that runs its container (on this
    machine, or through a cluster node's actor)."""

    @property
    def name(self) -> str: ...  # "podman", "docker", "fake": said in errors

    async def stop(self, name: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds. No error once it has ended."""
        ...

    async def kill(self, name: str) -> None:
        """SIGKILL now. No error once it has ended."""
        ...

    async def inspect(self, name: str) -> ContainerExit | None:
        """Its state, or None when no container has that name."""
        ...

    async def remove(self, name: str) -> None:
        """Remove it (killed first when it runs). No error when it does not exist."""
        ...


class ContainerEngine(ContainerControl, Protocol):
    async def exists(self, image: str) -> bool:
        """Whether `image` is in the engine's local store."""
        ...

    async def pull(self, image: str, access: RegistryAccess | None = None) -> None:
        """Fetch `image` from its registry (with `access`'s TLS setting and credentials
        when it is that registry's); raise EngineError when that fails."""
        ...

    async def push(self, image: str, access: RegistryAccess) -> None:
        """Send `image` (named with `access.address`) to that registry; raise EngineError
        when that fails."""
        ...

    async def run(self, run: ContainerRun) -> Attached:
        """Start the container, attached; raise EngineError when the engine refuses."""
        ...

    async def labelled(self, key: str, value: str) -> list[Labelled]:
        """Every container, running or not, whose label `key` is `value`."""
        ...

    async def logs(self, name: str) -> str:
        """All it wrote to stdout and stderr so far."""
        ...

    async def stored_images(self, repository: str) -> list[StoredImage]:
        """Every tag of `repository` (`localhost/nuvem/echo`, no tag) in the local store;
        never a tag of another repository, even one whose name starts the same."""
        ...

    async def remove_image(self, ref: str) -> bool:
        """Remove the tag `ref` from the local store (the image goes with its last tag);
        True when it is gone (or was not there), False when the engine keeps it because
        a container, running or not, uses it. Raise EngineError when the engine fails."""
        ...

    async def build(
        self,
        context: Path,
        file: str,
        tag: str,
        args: dict[str, str],
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        """Build `tag` from `file` in `context`, each line of its output to `on_line`;
        raise BuildError with the output's last lines when it fails."""
        ...

    async def close(self) -> None:
        """Release what the engine holds (connections, watches)."""
        ...


class EngineError(Exception):
    """The engine refused a command; the message carries what it printed."""


class BuildError(EngineError):
    """An image build failed; `tail` holds the last lines it printed."""

    def __init__(self, message: str, tail: list[str]) -> None:
        super().__init__(message)
        self.tail = tail
