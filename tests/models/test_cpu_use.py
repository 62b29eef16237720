"""What the rest of the machine used of a replica's cores: /proc/stat's busy time of those
cores, less the replica's own CPU time, over a window."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nuvem.models.core_ledger import MemoryBoard
from nuvem.models.core_share import CoreShare
from nuvem.models.cpu_use import WINDOW_S, FixedUse, ProcStatUse

# user nice system idle iowait irq softirq steal guest guest_nice, in ticks of 10 ms
STAT = """\
cpu  {total}
cpu0 {cpu0} 0 0 0
cpu1 {cpu1} 0 0 0
intr 12345
"""


class Machine:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = 100.0
        self.own = 0.0
        self.ticks = {0: [0] * 7, 1: [0] * 7}
        self.write()

    def write(self) -> None:
        rows = {f"cpu{i}": " ".join(map(str, fields)) for i, fields in self.ticks.items()}
        self.path.write_text(STAT.format(total="0 0 0 0", **rows))

    def run(self, seconds: float, busy: dict[int, float], own: float, idle: float = 0) -> None:
        """`seconds` pass; CPU i is busy `busy[i]` of them (user time, a tenth as steal)."""
        self.now += seconds
        self.own += own
        for cpu, value in busy.items():
            self.ticks[cpu][0] += round(value * 90)
            self.ticks[cpu][6] += round(value * 10)  # steal: the hypervisor's other guests
            self.ticks[cpu][3] += round(idle * 100)
        self.write()


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path / "stat")


def use_of(machine: Machine, cpus: tuple[int, ...] = (0, 1)) -> ProcStatUse:
    return ProcStatUse(cpus, machine.path, lambda: machine.own, lambda: machine.now, tick_s=0.01)


def test_a_quiet_machine_leaves_every_core(machine: Machine) -> None:
    use = use_of(machine)
    assert use.others() == 0.0  # no window yet
    machine.run(1.0, {0: 1.0, 1: 0.0}, own=1.0, idle=1.0)  # this replica's own core-second
    assert use.others() == pytest.approx(0.0, abs=0.02)


def test_a_neighbour_busy_on_a_core_counts_and_steal_time_too(machine: Machine) -> None:
    use = use_of(machine)
    machine.run(1.0, {0: 1.0, 1: 1.0}, own=1.0)
    assert use.others() == pytest.approx(1.0, abs=0.02)


def test_only_the_replica_s_own_cpus_count(machine: Machine) -> None:
    use = use_of(machine, cpus=(1,))
    machine.run(1.0, {0: 1.0, 1: 0.5}, own=0.0)
    assert use.others() == pytest.approx(0.5, abs=0.02)


def test_it_samples_once_a_window(machine: Machine) -> None:
    use = use_of(machine)
    machine.run(1.0, {0: 1.0, 1: 1.0}, own=0.0)
    assert use.others() == pytest.approx(2.0, abs=0.02)
    machine.run(WINDOW_S / 2, {0: 0.0, 1: 0.0}, own=0.0, idle=WINDOW_S / 2)
    assert use.others() == pytest.approx(2.0, abs=0.02)  # the last window's, kept
    machine.run(WINDOW_S, {0: 0.0, 1: 0.0}, own=0.0, idle=WINDOW_S)
    assert use.others() == pytest.approx(0.0, abs=0.02)


def test_this_machine_s_stat_reads() -> None:
    cpus = os.sched_getaffinity(0)
    use = ProcStatUse(cpus)
    use._last = (use._last[0] - WINDOW_S, *use._last[1:])  # a window ago
    assert 0.0 <= use.others() <= len(cpus) * 1.5  # ticks are coarse; never negative


def test_a_lone_replica_beside_a_busy_neighbour_stays_narrow() -> None:
    board = MemoryBoard()
    quiet, crowded = (
        CoreShare(board.ledger(), 2, FixedUse(0.1)),
        CoreShare(board.ledger(), 2, FixedUse(1.0)),
    )
    with quiet.busy() as threads:
        assert threads == 2
    board.clock_ns = lambda: 2**62  # long after: the linger is over
    with crowded.busy() as threads:
        assert threads == 1
