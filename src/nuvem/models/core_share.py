"""A replica's share of its node's cores, call by call: the ledger read, the policy applied."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from nuvem.models.core_ledger import CoreLedger
from nuvem.models.core_policy import threads_for
from nuvem.models.cpu_use import CpuUse, FixedUse, ProcStatUse
from nuvem.models.file_ledger import FileLedger

LEDGER_FILE = "cores.ledger"  # in the node's model cache folder, shared by its replicas


class CoreShare:
    def __init__(self, ledger: CoreLedger, cores: int, use: CpuUse | None = None) -> None:
        self.ledger = ledger
        self.cores = cores
        self.use = use or FixedUse()

    @contextlib.contextmanager
    def busy(self) -> Iterator[int]:
        """This replica is busy inside; yields the threads its forward passes may use."""
        busy = self.ledger.enter()
        # Only a lone replica looks past the ledger: shared, it has one thread per core.
        others = self.use.others() if busy <= 1 else 0.0
        threads = threads_for(self.cores, busy, others)
        try:
            yield threads
        finally:
            self.ledger.leave()

    def close(self) -> None:
        self.ledger.close()


def node_share(folder: Path, cores: int) -> CoreShare | None:
    """The share of a replica among those whose ledger is in `folder`; None when the
    ledger is full, and the replica keeps its fixed threads."""
    folder.mkdir(parents=True, exist_ok=True)
    ledger = FileLedger.open(folder / LEDGER_FILE)
    if ledger is None:
        return None
    return CoreShare(ledger, cores, ProcStatUse(os.sched_getaffinity(0)))
