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
import time
from pathlib import Path

from nuvem.runtime.container_engine import Attached, ContainerExit, ContainerRun, EngineError
from nuvem.runtime.oom_watch import OomWatch, find_memory_cgroup

RUNC = "/usr/sbin/runc"
ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")
_MISSING = ("no such container", "no container with name or id")
REMOVE_TRIES = 5
CGROUP_WAIT = 30.0  # seconds a started container's cgroup may take to appear


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
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            # Bounded: a loop being torn down may never deliver the exit.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(process.wait(), 5)
            raise
        assert process.returncode is not None
        return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def _checked(self, *args: str, within: float = 60) -> str:
        code, out, err = await self._podman(*args, within=within)
        if code != 0:
            raise EngineError(f"podman {args[0]} failed ({code}): {err.strip() or out.strip()}")
        return out

    async def exists(self, image: str) -> bool:
        code, _, _ = await self._podman("image", "exists", image)
        return code == 0

    async def run(self, run: ContainerRun) -> Attached:
        cidfile = self._ids / run.name
        cidfile.unlink(missing_ok=True)
        args = ["run", "--name", run.name, "--cidfile", str(cidfile), *self.ulimits]
        args += ["-p", f"127.0.0.1:{run.host_port}:{run.port}"]
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
        """Arm an OomWatch on the container's memory cgroup once it exists."""
        cidfile = self._ids / name
        deadline = time.monotonic() + CGROUP_WAIT
        while time.monotonic() < deadline and process.returncode is None:
            with contextlib.suppress(OSError):
                container_id = cidfile.read_text().strip()
                cgroup = find_memory_cgroup(container_id) if container_id else None
                if cgroup is not None:
                    watch = OomWatch(cgroup)
                    if watch.arm():
                        self._watches[name] = watch
                    return
            await asyncio.sleep(0.02)

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

    async def logs(self, name: str) -> str:
        code, out, err = await self._podman("logs", name)
        return out + err if code == 0 else ""

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

    async def build(self, context: Path, file: str, tag: str, args: dict[str, str]) -> None:
        build_args = [
            arg for key, value in args.items() for arg in ("--build-arg", f"{key}={value}")
        ]
        await self._checked(
            "build",
            "--format",
            "docker",  # OCI images drop HEALTHCHECK
            *self.ulimits,
            "-f",
            str(context / file),
            *build_args,
            "-t",
            tag,
            str(context),
            within=1800,
        )
