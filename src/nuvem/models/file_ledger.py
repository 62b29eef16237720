"""The core ledger that a node's replica processes share: slots in a small mmap'd file.

Each replica claims a slot by holding an open-file-description lock on that slot's byte
for as long as it lives; the kernel drops the lock when the process dies, however it dies,
so a new replica can take the slot over and clear what a dead one left. No lock is taken
per call: a replica writes only its own slot (one aligned 8-byte store, never torn) and
reads the others'. Two replicas starting a call at the same instant may each miss the
other's mark (stores are not ordered before loads here); that call runs with more threads
than its share and the next one corrects it.

A slot busy for longer than `STALE_NS` is checked against its lock before it is counted:
a replica killed in the middle of a call leaves a busy mark that no one would clear.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from nuvem.models.core_ledger import LINGER_NS, busy_slots

SLOTS = 64  # replicas one node's ledger can hold; more run with their fixed threads
SIZE = SLOTS * 8
STALE_NS = 1_000_000_000


def _flock(kind: int, slot: int) -> bytes:
    # struct flock: l_type, l_whence, l_start, l_len, l_pid (0, as OFD locks require).
    return struct.pack("hhqqi", kind, os.SEEK_SET, slot, 1, 0)


def _locked_by_another(fd: int, slot: int) -> bool:
    answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK, slot))
    return bool(struct.unpack("hhqqi", answer)[0] != fcntl.F_UNLCK)


class FileLedger:
    def __init__(
        self,
        fd: int,
        slot: int,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        linger_ns: int = LINGER_NS,
    ) -> None:
        self.fd = fd
        self.slot = slot
        self.clock_ns = clock_ns
        self.linger_ns = linger_ns
        self._map = mmap.mmap(fd, SIZE)
        self._slots = memoryview(self._map).cast("q")
        self._slots[slot] = 0  # what a dead owner left behind

    @classmethod
    def open(
        cls,
        path: Path,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        linger_ns: int = LINGER_NS,
    ) -> FileLedger | None:
        """This replica's ledger in the file at `path`, or None when every slot is taken."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                # Replicas starting together may all grow it: to the same size, with zeros.
                os.ftruncate(fd, SIZE)
            for slot in range(SLOTS):
                try:
                    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK, slot))
                except OSError:
                    continue  # another live replica's
                return cls(fd, slot, clock_ns, linger_ns)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return None

    def enter(self) -> int:
        now = self.clock_ns()
        slots = self._slots
        slots[self.slot] = -now
        count = 0
        for index in busy_slots(slots, now):
            since = -slots[index]
            if (
                index != self.slot
                and since > 0
                and now - since > STALE_NS
                and not _locked_by_another(self.fd, index)
            ):
                continue  # its replica died in a call
            count += 1
        return count

    def leave(self) -> None:
        self._slots[self.slot] = self.clock_ns() + self.linger_ns

    def close(self) -> None:
        if self._map.closed:
            return
        self._slots[self.slot] = 0
        self._slots.release()
        self._map.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)  # drops the slot's lock
