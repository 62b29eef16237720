"""Which container engine runs image functions on this machine (`container_engine:`).

`auto` takes Docker when its API answers (at `DOCKER_HOST`, else /var/run/docker.sock),
else podman when its command is installed, else none: image functions then fail to start
naming the fix. An engine chosen by name that is missing is an error at once.
"""

from __future__ import annotations

import shutil
import socket
import urllib.parse
from typing import Literal

from nuvem.errors import BadRequest, Unavailable
from nuvem.runtime.container_engine import ContainerEngine
from nuvem.runtime.podman import Podman
from nuvem.stack.container import ENGINE_NAMES, EngineName

DEFAULT_HOST = "unix:///var/run/docker.sock"


def ping(host: str, timeout: float = 2.0) -> bool:
    """Whether a Docker API answers at `host` (blocking; used to choose an engine). A raw
    request on a socket: nothing to leak when nothing listens."""
    parsed = urllib.parse.urlsplit(host)
    try:
        if parsed.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = parsed.path
        elif parsed.scheme in ("tcp", "http") and parsed.hostname:
            sock = socket.socket(socket.AF_INET6 if ":" in parsed.hostname else socket.AF_INET)
            address = (parsed.hostname, parsed.port or 2375)
        else:
            return False
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return sock.recv(64).split(b" ", 2)[1:2] == [b"200"]
    except OSError:
        return False


def no_engine(docker_host: str = "") -> tuple[str, str]:
    """Why image functions cannot start here, and the fix."""
    return (
        f"no container engine on this machine: no Docker API answers at "
        f"{docker_host or DEFAULT_HOST} and podman is not installed",
        "install podman (apt-get install podman runc) or start Docker, or set DOCKER_HOST "
        "to where its API listens",
    )


def engine_setting(setting: str, stack: EngineName | None) -> EngineName:
    """The engine asked for: NUVEM_CONTAINER_ENGINE when set, else the stack's."""
    if not setting:
        return stack or "auto"
    for name in ENGINE_NAMES:
        if setting == name:
            return name
    raise BadRequest(
        f"NUVEM_CONTAINER_ENGINE={setting!r} is not a container engine",
        "set it to auto, podman or docker, or unset it to use the stack's container_engine",
    )


def detect(choice: EngineName, docker_host: str = "") -> Literal["podman", "docker"] | None:
    """The engine `choice` means on this machine; None when it has none (blocking)."""
    host = docker_host or DEFAULT_HOST
    if choice in ("auto", "docker") and ping(host):
        return "docker"
    if choice in ("auto", "podman") and shutil.which("podman") is not None:
        return "podman"
    return None


def choose_engine(choice: EngineName, docker_host: str = "") -> ContainerEngine | None:
    """The engine for `choice`; None for `auto` with none here; Unavailable, naming the
    fix, when the engine chosen by name is missing."""
    host = docker_host or DEFAULT_HOST
    found = detect(choice, host)
    if found == "docker":
        from nuvem.runtime.docker import Docker  # httpx loads only where Docker is used

        return Docker(host)
    if found == "podman":
        return Podman()
    if choice == "docker":
        raise Unavailable(
            f"container_engine is docker, but no Docker API answers at {host}",
            "start the Docker daemon, set DOCKER_HOST (unix://PATH or tcp://HOST:PORT) to "
            "where it listens, or set container_engine: podman",
        )
    if choice == "podman":
        raise Unavailable(
            "container_engine is podman, but podman is not installed (no `podman` on PATH)",
            "apt-get install podman runc, or set container_engine: docker",
        )
    return None
