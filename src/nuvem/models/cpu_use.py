"""How much of this replica's cores the rest of the machine has been using lately.

The core ledger knows the node's replicas; it does not know a neighbour (another service,
a test suite, a hypervisor's other guests taking steal time). A lone replica that spreads
its forward pass over a core a neighbour keeps busy waits on its slowest thread: on this
project's shared 2-core machine that made a lone call 15% slower, not faster (docs/models.md,
"Threads and replicas"). So before a lone call widens, the replica asks how many cores
others kept busy over the last `WINDOW_S`: the busy time of its CPUs in /proc/stat
(steal included) less its own process's CPU time, which keeps its own threads from
counting against it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Protocol

WINDOW_S = 0.25  # one sample per window at most: /proc/stat moves in 10 ms ticks
# /proc/stat's cpuN fields: user nice system idle iowait irq softirq steal guest guest_nice.
# Guest time is already counted in user; idle and iowait are time no one ran.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


class CpuUse(Protocol):
    def others(self) -> float:
        """Cores that other processes kept busy lately, on average."""
        ...


class FixedUse:
    """The in-memory fake: a machine whose neighbours use `cores` cores."""

    def __init__(self, cores: float = 0.0) -> None:
        self.cores = cores

    def others(self) -> float:
        return self.cores


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class ProcStatUse:
    def __init__(
        self,
        cpus: Collection[int],
        stat: Path = Path("/proc/stat"),
        own_cpu_s: Callable[[], float] = _own_cpu_s,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = 1 / (os.sysconf("SC_CLK_TCK") or 100),
    ) -> None:
        self.names = {f"cpu{index}" for index in cpus}
        self.stat = stat
        self.own_cpu_s = own_cpu_s
        self.clock = clock
        self.tick_s = tick_s
        self._last = self._sample()
        self._others = 0.0  # until a window has passed: assume a quiet machine

    def _sample(self) -> tuple[float, float, float]:
        """(when, busy seconds of our CPUs, this process's CPU seconds)."""
        busy = 0
        with self.stat.open("rb") as lines:
            for line in lines:
                if not line.startswith(b"cpu"):
                    break  # the cpu lines come first
                fields = line.split()
                if fields[0].decode() in self.names:
                    busy += sum(int(fields[1 + index]) for index in _BUSY_FIELDS)
        return self.clock(), busy * self.tick_s, self.own_cpu_s()

    def others(self) -> float:
        if self.clock() - self._last[0] >= WINDOW_S:
            now = self._sample()
            elapsed = now[0] - self._last[0]
            theirs = (now[1] - self._last[1]) - (now[2] - self._last[2])
            self._others = max(0.0, theirs / elapsed)
            self._last = now
        return self._others
