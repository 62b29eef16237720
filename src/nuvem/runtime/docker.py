"""`Docker`: the container engine, driven through the Docker Engine HTTP API.

It speaks to the daemon's socket (`/var/run/docker.sock`, or `DOCKER_HOST`: `unix://PATH`
or `tcp://HOST:PORT`) with httpx, not through the `docker` command: one connection pool,
no process per command. `podman system service` serves the same API, so the engine is
tested against podman's (docs/containers.md). The settings podman needs on this kind of
machine apply through the API too: a container created without lowered rlimits fails to
start ("error setting rlimit type 7"), so they are sent with every container; the OCI
runtime (runc) is the serving daemon's setting (`podman --runtime /usr/sbin/runc system
service`), not the API's.

"Attached" here is the daemon's log stream (`logs?follow=1`, stdout and stderr framed
apart) and its `wait` call, which answers with the exit code once the container ends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import tarfile
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from nuvem.runtime.container_engine import (
    BuildError,
    ContainerExit,
    ContainerRun,
    EngineError,
    Labelled,
    StoredImage,
    repository_of,
)
from nuvem.runtime.engine_choice import DEFAULT_HOST
from nuvem.runtime.oom_watch import OomWatch, watch_container
from nuvem.runtime.podman import ULIMITS

if TYPE_CHECKING:
    from nuvem.runtime.registry_access import RegistryAccess

REMOVE_TRIES = 5
BUILD_TAIL = 40  # lines of a failed build's output kept for its error
_FRAME = 8  # bytes of a multiplexed stream's frame header: stream, 0, 0, 0, size (BE)
_STREAMS = {1: "stdout", 2: "stderr"}


def client_for(host: str, timeout: float | None = 60.0) -> httpx.AsyncClient:
    """An httpx client for the daemon at `host` (unix://PATH or tcp://HOST:PORT)."""
    parsed = urllib.parse.urlsplit(host)
    if parsed.scheme == "unix":
        transport = httpx.AsyncHTTPTransport(uds=parsed.path)
        return httpx.AsyncClient(transport=transport, base_url="http://docker", timeout=timeout)
    if parsed.scheme in ("tcp", "http"):
        return httpx.AsyncClient(base_url=f"http://{parsed.netloc}", timeout=timeout)
    raise EngineError(
        f"DOCKER_HOST {host!r} is neither unix://PATH nor tcp://HOST:PORT; "
        "set it to one of them (e.g. unix:///var/run/docker.sock)"
    )


def _ulimits(limits: tuple[str, ...]) -> list[dict[str, Any]]:
    found = []
    for limit in limits:
        name, _, values = limit.partition("=")
        soft, _, hard = values.partition(":")
        found.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
    return found


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("message", answer.text)).strip()
    except ValueError:
        return answer.text.strip()


async def demultiplex(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, bytes]]:
    """(stream, bytes) from the daemon's framed stdout/stderr stream."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        while len(pending) >= _FRAME:
            size = int.from_bytes(pending[4:_FRAME], "big")
            if len(pending) < _FRAME + size:
                break
            yield _STREAMS.get(pending[0], "stdout"), pending[_FRAME : _FRAME + size]
            pending = pending[_FRAME + size :]


def _context_tar(context: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(context, arcname=".")
    return buffer.getvalue()


class DockerContainer:
    """The attached side of one container: its output streams and its exit. Implements
    `Attached`; `pid` is the container's main process, as the daemon reports it."""

    def __init__(self, client: httpx.AsyncClient, container_id: str, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdout: asyncio.StreamReader | None = asyncio.StreamReader()
        self.stderr: asyncio.StreamReader | None = asyncio.StreamReader()
        self._client = client
        self._id = container_id
        loop = asyncio.get_running_loop()
        self._pump = loop.create_task(self._follow())
        self._exit = loop.create_task(self._wait())

    async def _follow(self) -> None:
        readers = {"stdout": self.stdout, "stderr": self.stderr}
        try:
            async with self._client.stream(
                "GET",
                f"/containers/{self._id}/logs",
                params={"follow": "1", "stdout": "1", "stderr": "1"},
                timeout=None,
            ) as answer:
                async for stream, data in demultiplex(answer.aiter_bytes()):
                    reader = readers[stream]
                    if reader is not None:
                        reader.feed_data(data)
        except httpx.HTTPError:
            pass  # the daemon went away: the exit says the rest
        finally:
            for reader in readers.values():
                if reader is not None:
                    reader.feed_eof()

    async def _wait(self) -> None:
        code = -1  # the daemon could not say: it went away, or the container was removed
        with contextlib.suppress(httpx.HTTPError, ValueError):
            answer = await self._client.post(f"/containers/{self._id}/wait", timeout=None)
            if answer.status_code == 200:
                code = int(answer.json().get("StatusCode", -1))
        # Its last lines come before its end, as with an attached process.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pump), 5)
        self.returncode = code

    async def wait(self) -> int:
        await asyncio.shield(self._exit)
        assert self.returncode is not None
        return self.returncode


class Docker:
    """Implements `ContainerEngine` over the Docker Engine API."""

    name = "docker"

    def __init__(self, host: str = DEFAULT_HOST, ulimits: tuple[str, ...] = ULIMITS) -> None:
        self.host = host
        self.ulimits = _ulimits(ulimits)
        self._client = client_for(host)
        self._local = host.startswith("unix:")  # its cgroups are this machine's
        self._watches: dict[str, OomWatch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tail: list[str] = []  # the last streamed call's output lines

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise EngineError(
                f"the Docker API at {self.host} did not answer {method} {path}: "
                f"{type(error).__name__}: {error}"
            ) from None

    async def exists(self, image: str) -> bool:
        answer = await self._request("GET", f"/images/{image}/json")
        return answer.status_code == 200

    async def pull(self, image: str, access: RegistryAccess | None = None) -> None:
        await self._streamed(
            "pull",
            "POST",
            "/images/create",
            params={"fromImage": image, **_tls(access)},
            headers=_auth_header(access),
        )

    async def push(self, image: str, access: RegistryAccess) -> None:
        name, _, tag = image.rpartition(":")
        if "/" in tag or not name:  # no tag: the colon was the registry's port
            name, tag = image, "latest"
        await self._streamed(
            "push",
            "POST",
            f"/images/{name}/push",
            params={"tag": tag, **_tls(access)},
            headers=_auth_header(access),
        )

    async def run(self, run: ContainerRun) -> DockerContainer:
        exposed = f"{run.port}/tcp"
        host_config: dict[str, Any] = {
            "PortBindings": {exposed: [{"HostIp": run.host_ip, "HostPort": str(run.host_port)}]},
            "Ulimits": self.ulimits,
        }
        if run.cpus is not None:
            host_config["NanoCpus"] = int(run.cpus * 1e9)
        if run.memory is not None:
            # Swap the same as memory: above the limit the kernel kills, it does not swap.
            host_config["Memory"] = run.memory
            host_config["MemorySwap"] = run.memory
        body = {
            "Image": run.image,
            "Env": [f"{key}={value}" for key, value in run.env.items()],
            "Labels": dict(run.labels),
            "ExposedPorts": {exposed: {}},
            "HostConfig": host_config,
        }
        created = await self._request(
            "POST", "/containers/create", params={"name": run.name}, json=body
        )
        if created.status_code != 201:
            raise EngineError(f"docker create failed ({created.status_code}): {_message(created)}")
        container_id = str(created.json()["Id"])
        started = await self._request("POST", f"/containers/{container_id}/start")
        if started.status_code not in (204, 304):
            with contextlib.suppress(EngineError):
                await self._request("DELETE", f"/containers/{container_id}", params={"force": "1"})
            raise EngineError(f"docker start failed ({started.status_code}): {_message(started)}")
        pid = 0
        inspected = await self._request("GET", f"/containers/{container_id}/json")
        if inspected.status_code == 200:
            pid = int(inspected.json().get("State", {}).get("Pid") or 0)
        container = DockerContainer(self._client, container_id, pid)
        if run.memory is not None and self._local:
            task = asyncio.get_running_loop().create_task(
                self._watch_oom(run.name, container_id, container)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return container

    async def _watch_oom(self, name: str, container_id: str, container: DockerContainer) -> None:
        watch = await watch_container(lambda: container_id, lambda: container.returncode is None)
        if watch is not None:
            self._watches[name] = watch

    async def stop(self, name: str, grace: float) -> None:
        timeout = max(0, round(grace))
        await self._request(
            "POST", f"/containers/{name}/stop", params={"t": str(timeout)}, timeout=timeout + 30
        )

    async def kill(self, name: str) -> None:
        await self._request("POST", f"/containers/{name}/kill", params={"signal": "SIGKILL"})

    async def inspect(self, name: str) -> ContainerExit | None:
        answer = await self._request("GET", f"/containers/{name}/json")
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise EngineError(f"docker inspect failed ({answer.status_code}): {_message(answer)}")
        state = answer.json()["State"]
        watch = self._watches.get(name)
        return ContainerExit(
            code=None if state.get("Running") else int(state.get("ExitCode", 0)),
            oom_killed=bool(state.get("OOMKilled")) or (watch is not None and watch.fired),
        )

    async def labelled(self, key: str, value: str) -> list[Labelled]:
        filters = json.dumps({"label": [f"{key}={value}"]})
        answer = await self._request(
            "GET", "/containers/json", params={"all": "1", "filters": filters}
        )
        if answer.status_code != 200:
            raise EngineError(f"docker ps failed ({answer.status_code}): {_message(answer)}")
        return [
            Labelled(str(found["Names"][0]).lstrip("/"), dict(found.get("Labels") or {}))
            for found in answer.json()
        ]

    async def logs(self, name: str) -> str:
        answer = await self._request(
            "GET", f"/containers/{name}/logs", params={"stdout": "1", "stderr": "1"}
        )
        if answer.status_code != 200:
            return ""

        async def body() -> AsyncIterator[bytes]:
            yield answer.content

        parts = [data async for _, data in demultiplex(body())]
        return b"".join(parts).decode(errors="replace")

    async def stored_images(self, repository: str) -> list[StoredImage]:
        filters = json.dumps({"reference": [repository]})
        answer = await self._request("GET", "/images/json", params={"filters": filters})
        if answer.status_code != 200:
            raise EngineError(f"docker images failed ({answer.status_code}): {_message(answer)}")
        return [
            StoredImage(ref, str(found["Id"]), float(found.get("Created") or 0))
            for found in answer.json()
            # The filter matches by pattern: keep the repository's own tags only.
            for ref in found.get("RepoTags") or []
            if repository_of(ref) == repository
        ]

    async def remove_image(self, ref: str) -> bool:
        # Without force: the daemon answers 409 for an image a container uses.
        answer = await self._request("DELETE", f"/images/{ref}")
        if answer.status_code in (200, 404):
            return True
        if answer.status_code == 409:
            return False
        raise EngineError(f"docker rmi {ref} failed ({answer.status_code}): {_message(answer)}")

    async def remove(self, name: str) -> None:
        watch = self._watches.pop(name, None)
        if watch is not None:
            watch.close()
        # Right after an exit the engine may still be cleaning the container up (409).
        for _ in range(REMOVE_TRIES):
            answer = await self._request(
                "DELETE", f"/containers/{name}", params={"force": "1", "v": "1"}
            )
            if answer.status_code in (204, 404):
                return
            await asyncio.sleep(0.2)

    async def build(
        self,
        context: Path,
        file: str,
        tag: str,
        args: dict[str, str],
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        data = await asyncio.to_thread(_context_tar, context)
        params = {
            "t": tag,
            "dockerfile": file,
            "buildargs": json.dumps(args),
            # No ulimits: podman's service refuses Docker's form of them (400), and its
            # RUN steps need none (measured); a Docker daemon needs none either.
            "rm": "1",
            # No layer cache, as with podman's command line: buildah behind podman's
            # service reuses a layer whatever an argument's new value (measured: an ARG
            # changed alone built the old image); nuvem's own cache is the source digest.
            "nocache": "1",
        }
        try:
            await self._streamed(
                "build",
                "POST",
                "/build",
                params=params,
                content=data,
                headers={"Content-Type": "application/x-tar"},
                timeout=1800,
                on_line=on_line,
            )
        except EngineError as error:
            raise BuildError(str(error), self._tail) from None

    async def _streamed(
        self,
        what: str,
        method: str,
        path: str,
        on_line: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """A call that answers with JSON progress lines; an `error` line fails it."""
        lines: list[str] = []
        try:
            async with self._client.stream(method, path, **kwargs) as answer:
                async for line in answer.aiter_lines():
                    if not line.strip():
                        continue
                    lines.append(line)
                    if on_line is not None:
                        for text in _progress([line]):
                            on_line(text)
                status = answer.status_code
        except httpx.HTTPError as error:
            raise EngineError(f"docker {what}: the API at {self.host} failed: {error}") from None
        finally:
            self._tail = _progress(lines)[-BUILD_TAIL:]
        if status != 200:
            raise EngineError(f"docker {what} failed ({status}): {''.join(lines)}")
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("error"):
                    output = " | ".join(self._tail[-10:])
                    raise EngineError(f"docker {what} failed: {record['error']}: {output}")

    async def close(self) -> None:
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        await self._client.aclose()


def _tls(access: RegistryAccess | None) -> dict[str, str]:
    """podman's service takes tlsVerify per call; a Docker daemon ignores it (its
    insecure-registries setting, which includes 127.0.0.0/8, decides)."""
    return {"tlsVerify": "false"} if access is not None and not access.tls_verify else {}


def _auth_header(access: RegistryAccess | None) -> dict[str, str]:
    """X-Registry-Auth: base64url of the credentials' JSON (an empty object without any:
    a Docker daemon wants the header on a push)."""
    body: dict[str, str] = {}
    if access is not None and access.username:
        body = {
            "username": access.username,
            "password": access.password,
            "serveraddress": access.address,
        }
    encoded = base64.urlsafe_b64encode(json.dumps(body).encode()).decode()
    return {"X-Registry-Auth": encoded}


def _progress(lines: list[str]) -> list[str]:
    text = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("stream"):
                text.append(str(record["stream"]).strip())
    return [t for t in text if t]
