"""`OomWatch`: hears the kernel report that a container's memory cgroup hit its limit.

podman on cgroup v1 with runc leaves `State.OOMKilled` false for a container its memory
limit killed (measured here: exit code 137, OOMKilled false, no "oom" event), so a memory
kill would read as a plain SIGKILL. cgroup v1 can notify instead: an eventfd registered in
`cgroup.event_control` against `memory.oom_control` is signalled when the cgroup runs out
of memory, and once more when the cgroup is removed. A signal while the cgroup is still
there is the memory limit at work (measured: it comes before `oom_kill` counts the kill,
so that counter cannot be waited for).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")
CGROUP_WAIT = 30.0  # seconds a started container's cgroup may take to appear
POLL = 0.02


def find_memory_cgroup(container_id: str, root: Path = MEMORY_ROOT) -> Path | None:
    """The container's memory cgroup folder (cgroupfs or systemd layout), if cgroup v1."""
    for depth in ("*", "*/*", "*/*/*"):
        for found in root.glob(f"{depth}/*{container_id}*"):
            if (found / "memory.oom_control").exists():
                return found
    return None


class OomWatch:
    def __init__(self, cgroup: Path) -> None:
        self.cgroup = cgroup
        self.fired = False
        self._eventfd: int | None = None
        self._control: int | None = None

    def arm(self) -> bool:
        """Register for the cgroup's OOM notifications on this event loop; False when the
        cgroup cannot be watched (gone already, or not cgroup v1)."""
        try:
            self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._control = os.open(self.cgroup / "memory.oom_control", os.O_RDONLY)
            (self.cgroup / "cgroup.event_control").write_text(f"{self._eventfd} {self._control}")
        except OSError:
            self.close()
            return False
        asyncio.get_running_loop().add_reader(self._eventfd, self._woken)
        return True

    def _woken(self) -> None:
        assert self._eventfd is not None
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._eventfd)
        if (self.cgroup / "memory.oom_control").exists():
            self.fired = True
        else:  # the cgroup was removed: that was the last notification
            self.close()

    def close(self) -> None:
        if self._eventfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._eventfd)
            os.close(self._eventfd)
            self._eventfd = None
        if self._control is not None:
            os.close(self._control)
            self._control = None


async def watch_container(
    container_id: Callable[[], str | None],
    running: Callable[[], bool],
    within: float = CGROUP_WAIT,
) -> OomWatch | None:
    """An armed OomWatch on a container's memory cgroup, once its id is known and its
    cgroup exists; None when it ends first, or its cgroup cannot be watched."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and running():
        found = container_id()
        cgroup = find_memory_cgroup(found) if found else None
        if cgroup is not None:
            watch = OomWatch(cgroup)
            return watch if watch.arm() else None
        await asyncio.sleep(POLL)
    return None
