"""Which model replicas of a node are busy: the ledger they share to split the node's cores.

Each replica owns one slot, an int64: 0 when idle, `-t` while busy since monotonic time `t`
(ns), and `t` after a call ended, until when it still counts as busy. That linger keeps a
stream of calls from two callers at one thread each instead of flapping between one and
all cores in the short gaps between one call's end and the next one's start.

`MemoryLedger` is the in-memory fake (replicas as objects in one process, a clock of your
own); `nuvem.models.file_ledger.FileLedger` is the one replica processes share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

LINGER_NS = 300_000_000  # a replica counts as busy this long after its call ended


class CoreLedger(Protocol):
    def enter(self) -> int:
        """Mark this replica busy; how many replicas of the node are busy now, itself too."""
        ...

    def leave(self) -> None:
        """Mark it idle, still counted as busy for the linger."""
        ...

    def close(self) -> None:
        """Give the slot back."""
        ...


def busy_slots(slots: Sequence[int], now: int) -> list[int]:
    """The indices of the slots busy at `now`: in a call, or within their linger."""
    return [index for index, value in enumerate(slots) if value < 0 or value > now]


class MemoryBoard:
    """The slots replicas in one process share; a ledger per replica from `ledger()`."""

    def __init__(
        self, clock_ns: Callable[[], int] = time.monotonic_ns, linger_ns: int = LINGER_NS
    ) -> None:
        self.clock_ns = clock_ns
        self.linger_ns = linger_ns
        self.slots: list[int] = []
        self.lock = threading.Lock()

    def ledger(self) -> MemoryLedger:
        with self.lock:
            self.slots.append(0)
            return MemoryLedger(self, len(self.slots) - 1)


class MemoryLedger:
    def __init__(self, board: MemoryBoard, slot: int) -> None:
        self.board = board
        self.slot = slot

    def enter(self) -> int:
        board = self.board
        with board.lock:
            now = board.clock_ns()
            board.slots[self.slot] = -now
            return len(busy_slots(board.slots, now))

    def leave(self) -> None:
        board = self.board
        with board.lock:
            board.slots[self.slot] = board.clock_ns() + board.linger_ns

    def close(self) -> None:
        with self.board.lock:
            self.board.slots[self.slot] = 0
