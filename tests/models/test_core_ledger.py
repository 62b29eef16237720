"""The core ledger: the in-memory fake and the file the replica processes share answer alike
(one contract), and the file one holds across real processes, dead ones included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nuvem.models.core_ledger import LINGER_NS, CoreLedger, MemoryBoard
from nuvem.models.core_share import LEDGER_FILE, CoreShare, node_share
from nuvem.models.file_ledger import SLOTS, STALE_NS, FileLedger


class Clock:
    """Monotonic nanoseconds that move only when told, from the real clock's now."""

    def __init__(self) -> None:
        self.now = time.monotonic_ns()

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


Factory = Callable[[], CoreLedger]


@pytest.fixture(params=["memory", "file"])
def ledgers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Factory, Clock]]:
    clock = Clock()
    made: list[CoreLedger] = []
    board = MemoryBoard(clock)

    def make() -> CoreLedger:
        if request.param == "memory":
            ledger: CoreLedger = board.ledger()
        else:
            opened = FileLedger.open(tmp_path / LEDGER_FILE, clock)
            assert opened is not None
            ledger = opened
        made.append(ledger)
        return ledger

    yield make, clock
    for ledger in made:
        ledger.close()


def test_a_lone_replica_counts_itself(ledgers: tuple[Factory, Clock]) -> None:
    make, _ = ledgers
    one, _two = make(), make()
    assert one.enter() == 1
    one.leave()
    assert one.enter() == 1  # its own linger does not count twice


def test_busy_replicas_see_each_other(ledgers: tuple[Factory, Clock]) -> None:
    make, _ = ledgers
    one, two, three = make(), make(), make()
    assert one.enter() == 1
    assert two.enter() == 2
    assert three.enter() == 3
    one.leave()
    two.leave()
    assert three.enter() == 3  # both still within their linger


def test_a_replica_counts_as_busy_for_the_linger_after_its_call(
    ledgers: tuple[Factory, Clock],
) -> None:
    make, clock = ledgers
    one, two = make(), make()
    one.enter()
    one.leave()
    clock.advance(LINGER_NS / 2e9)
    assert two.enter() == 2
    two.leave()
    clock.advance(LINGER_NS / 1e9 + 0.001)
    assert two.enter() == 1


def test_a_closed_replica_no_longer_counts(ledgers: tuple[Factory, Clock]) -> None:
    make, _ = ledgers
    one, two = make(), make()
    one.enter()
    one.close()
    assert two.enter() == 1


def test_the_share_gives_a_lone_replica_every_core_and_busy_ones_a_part(
    ledgers: tuple[Factory, Clock],
) -> None:
    make, clock = ledgers
    first, second = CoreShare(make(), 4), CoreShare(make(), 4)
    with first.busy() as threads:
        assert threads == 4
        with second.busy() as threads:
            assert threads == 2
    clock.advance(1.0)
    with second.busy() as threads:
        assert threads == 4


# -- the file, across processes ---------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from nuvem.models.file_ledger import FileLedger
ledger = FileLedger.open(Path(sys.argv[1]))
assert ledger is not None
print(ledger.slot, ledger.enter(), flush=True)
time.sleep(600)
"""


def holder(path: Path) -> tuple[subprocess.Popen[str], int, int]:
    """A process that takes a slot and stays busy; its slot and what it counted."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    slot, count = process.stdout.readline().split()
    return process, int(slot), int(count)


def end(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_replica_processes_count_each_other_and_a_killed_one_stops_counting(
    tmp_path: Path,
) -> None:
    path = tmp_path / LEDGER_FILE
    clock = Clock()
    first, first_slot, first_count = holder(path)
    try:
        second, second_slot, second_count = holder(path)
        try:
            assert (first_count, second_count) == (1, 2)
            assert first_slot != second_slot
            mine = FileLedger.open(path, clock)
            assert mine is not None
            assert mine.slot not in (first_slot, second_slot)
            assert mine.enter() == 3
            mine.leave()
            # Long busy, but alive: its lock says so, and it still counts.
            clock.advance(STALE_NS / 1e9 + 1)
            assert mine.enter() == 3
            mine.leave()
            second.send_signal(signal.SIGKILL)  # dies in the middle of its call
            second.wait()
            assert mine.enter() == 2
            mine.close()
            # A new replica takes the dead one's slot (the lowest free) and clears its mark.
            third, third_slot, third_count = holder(path)
            try:
                assert third_slot == second_slot
                assert third_count == 2  # the first holder and itself
            finally:
                end(third)
        finally:
            end(second)
    finally:
        end(first)


def test_a_full_ledger_leaves_the_replica_its_fixed_threads(tmp_path: Path) -> None:
    taken = [FileLedger.open(tmp_path / LEDGER_FILE) for _ in range(SLOTS)]
    try:
        assert all(ledger is not None for ledger in taken)
        assert node_share(tmp_path, 2) is None
    finally:
        for ledger in taken:
            assert ledger is not None
            ledger.close()
    share = node_share(tmp_path, 2)
    assert share is not None
    share.close()


def test_the_ledger_file_is_private_to_the_node_s_owner(tmp_path: Path) -> None:
    share = node_share(tmp_path / "models", 2)
    assert share is not None
    try:
        assert os.stat(tmp_path / "models" / LEDGER_FILE).st_mode & 0o077 == 0
    finally:
        share.close()
