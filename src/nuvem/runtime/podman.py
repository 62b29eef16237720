"""`Podman`: the container engine, driven through podman's command line.

Two settings this kind of machine needs (docs/containers.md): the OCI runtime is runc,
because crun (podman's default) fails on a hybrid cgroup hierarchy, and rlimits are
lowered explicitly, because the sandbox refuses to raise them (podman's default, and
`--ulimit host`, both try to).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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
from nuvem.runtime.line_pump import pump_lines
from nuvem.runtime.oom_watch import OomWatch, watch_container

if TYPE_CHECKING:
    from nuvem.runtime.registry_access import RegistryAccess

RUNC = "/usr/sbin/runc"
ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")
_MISSING = ("no such container", "no container with name or id")
_NO_IMAGE = ("image not known", "no such image")
IMAGE_IN_USE = 2  # podman rmi's exit status when a container uses the image
REMOVE_TRIES = 5
BUILD_TIMEOUT = 1800.0  # seconds an image build may take
BUILD_TAIL = 40  # lines of a failed build's output kept for its error


class Podman:
    name = "podman"

    def __init__(
        self,
        binary: str = "podman",
        runtime: str | None = RUNC,
        ulimits: tuple[str, ...] = ULIMITS,
    ) -> None:
        self.base = [binary] + (["--runtime", runtime] if runtime else [])
        self.ulimits = [arg for limit in ulimits for arg in ("--ulimit", limit)]
        self._ids = Path(tempfile.mkdtemp(prefix="nuvem-podman-"))  # --cidfile targets
        self._watches: dict[str, OomWatch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def _podman(self, *args: str, within: float = 60) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            *self.base,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(within):
                out, err = await process.communicate()
        except BaseException:
            await _end(process)
            raise
        assert process.returncode is not None
        return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def exists(self, image: str) -> bool:
        code, _, _ = await self._podman("image", "exists", image)
        return code == 0

    async def run(self, run: ContainerRun) -> Attached:
        cidfile = self._ids / run.name
        cidfile.unlink(missing_ok=True)
        args = ["run", "--name", run.name, "--cidfile", str(cidfile), *self.ulimits]
        args += ["-p", f"{run.host_ip}:{run.host_port}:{run.port}"]
        if run.cpus is not None:
            args += ["--cpus", f"{run.cpus:g}"]
        if run.memory is not None:
            # Swap the same as memory: above the limit the kernel kills, it does not swap.
            args += ["--memory", str(run.memory), "--memory-swap", str(run.memory)]
        for key, value in run.env.items():
            args += ["--env", f"{key}={value}"]
        for key, value in run.labels.items():
            args += ["--label", f"{key}={value}"]
        process = await asyncio.create_subprocess_exec(
            *self.base,
            *args,
            run.image,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # Ctrl-C in the terminal reaches the gateway only
        )
        if run.memory is not None:
            task = asyncio.get_running_loop().create_task(self._watch_oom(run.name, process))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return process

    async def _watch_oom(self, name: str, process: asyncio.subprocess.Process) -> None:
        cidfile = self._ids / name

        def container_id() -> str | None:
            with contextlib.suppress(OSError):
                return cidfile.read_text().strip() or None
            return None

        watch = await watch_container(container_id, lambda: process.returncode is None)
        if watch is not None:
            self._watches[name] = watch

    def _registry(self, access: RegistryAccess | None) -> list[str]:
        """The arguments that reach `access`'s registry: TLS off, and its credentials in an
        auth file only this user reads (not on the command line, where ps shows them)."""
        if access is None:
            return []
        args = [] if access.tls_verify else ["--tls-verify=false"]
        auth = access.auth_json()
        if auth:
            path = self._ids / f"auth-{access.address.replace(':', '_')}.json"
            path.touch(mode=0o600)
            path.write_text(auth)
            args += ["--authfile", str(path)]
        return args

    async def pull(self, image: str, access: RegistryAccess | None = None) -> None:
        code, out, err = await self._podman(
            "pull", "--quiet", *self._registry(access), image, within=BUILD_TIMEOUT
        )
        if code != 0:
            raise EngineError(f"podman pull failed ({code}): {err.strip() or out.strip()}")

    async def push(self, image: str, access: RegistryAccess) -> None:
        code, out, err = await self._podman(
            "push", "--quiet", *self._registry(access), image, within=BUILD_TIMEOUT
        )
        if code != 0:
            raise EngineError(f"podman push failed ({code}): {err.strip() or out.strip()}")

    async def stop(self, name: str, grace: float) -> None:
        await self._podman("stop", "--time", str(max(0, round(grace))), name)

    async def kill(self, name: str) -> None:
        await self._podman("kill", name)

    async def inspect(self, name: str) -> ContainerExit | None:
        code, out, err = await self._podman("container", "inspect", name)
        if code != 0:
            if any(text in err.lower() for text in _MISSING):
                return None
            raise EngineError(f"podman inspect failed ({code}): {err.strip()}")
        state = json.loads(out)[0]["State"]
        running = state.get("Running", False)
        watch = self._watches.get(name)
        return ContainerExit(
            code=None if running else int(state.get("ExitCode", 0)),
            oom_killed=bool(state.get("OOMKilled", False)) or (watch is not None and watch.fired),
        )

    async def labelled(self, key: str, value: str) -> list[Labelled]:
        code, out, err = await self._podman(
            "ps", "--all", "--filter", f"label={key}={value}", "--format", "json"
        )
        if code != 0:
            raise EngineError(f"podman ps failed ({code}): {err.strip()}")
        return [
            Labelled(str(found["Names"][0]), dict(found.get("Labels") or {}))
            for found in json.loads(out or "[]")
        ]

    async def logs(self, name: str) -> str:
        code, out, err = await self._podman("logs", name)
        return out + err if code == 0 else ""

    async def stored_images(self, repository: str) -> list[StoredImage]:
        code, out, err = await self._podman(
            "images", "--format", "json", "--filter", f"reference={repository}"
        )
        if code != 0:
            raise EngineError(f"podman images failed ({code}): {err.strip()}")
        return [
            StoredImage(ref, str(found["Id"]), float(found.get("Created") or 0))
            for found in json.loads(out or "[]")
            # The filter matches by pattern: keep the repository's own tags only.
            for ref in found.get("Names") or []
            if repository_of(ref) == repository
        ]

    async def remove_image(self, ref: str) -> bool:
        # Without --force: podman refuses an image a container uses, which is the point.
        code, _, err = await self._podman("rmi", ref)
        if code == 0 or any(text in err.lower() for text in _NO_IMAGE):
            return True
        if code == IMAGE_IN_USE or "in use" in err.lower():
            return False
        raise EngineError(f"podman rmi {ref} failed ({code}): {err.strip()}")

    async def remove(self, name: str) -> None:
        watch = self._watches.pop(name, None)
        if watch is not None:
            watch.close()
        (self._ids / name).unlink(missing_ok=True)
        # Right after an exit podman may still be cleaning the container up and refuse
        # (seen: an OOM-killed container left behind as Exited): try again, briefly.
        for _ in range(REMOVE_TRIES):
            code, _, err = await self._podman("rm", "--force", "--time", "0", name)
            if code == 0 or any(text in err.lower() for text in _MISSING):
                return
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        # Registry credentials outlive no engine that used them.
        for auth in self._ids.glob("auth-*.json"):
            auth.unlink(missing_ok=True)

    async def build(
        self,
        context: Path,
        file: str,
        tag: str,
        args: dict[str, str],
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        build_args = [
            arg for key, value in args.items() for arg in ("--build-arg", f"{key}={value}")
        ]
        process = await asyncio.create_subprocess_exec(
            *self.base,
            "build",
            # No layer cache: buildah here reuses an `ENV X=${ARG}` layer whatever the
            # argument's new value (measured); nuvem's own cache is the source digest.
            "--no-cache",
            "--format",
            "docker",  # OCI images drop HEALTHCHECK
            *self.ulimits,
            "-f",
            str(context / file),
            *build_args,
            "-t",
            tag,
            str(context),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        tail: deque[str] = deque(maxlen=BUILD_TAIL)

        def line(text: str) -> None:
            tail.append(text)
            if on_line is not None:
                on_line(text)

        assert process.stdout is not None
        try:
            async with asyncio.timeout(BUILD_TIMEOUT):
                await pump_lines(process.stdout, line)
                code = await process.wait()
        except TimeoutError:
            await _end(process)
            raise BuildError(f"podman build ran past {BUILD_TIMEOUT:g}s", list(tail)) from None
        except BaseException:
            await _end(process)
            raise
        if code != 0:
            raise BuildError(f"podman build failed ({code})", list(tail))


async def _end(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    # Bounded: a loop being torn down may never deliver the exit.
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(process.wait(), 5)
