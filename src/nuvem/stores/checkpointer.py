"""`WalCheckpointer`: moves an SQLite file's WAL checkpoints off the event loop.

By default SQLite checkpoints inside whichever commit fills the WAL past 1000 pages, and
that commit then waits for an fsync: tens of milliseconds on the accept path of a job, every
hundred or so submits. With automatic checkpoints off on the store's connections, this
thread checkpoints instead (PASSIVE: it never blocks writers), on its own connection.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from nuvem.stores.engines import WAL_SIZE_LIMIT

log = logging.getLogger(__name__)
INTERVAL = 0.1
# A WAL file is reused from its start once fully checkpointed, so its size on disk is a
# high-water mark, not what is left to copy: journal_size_limit (engines.py) trims it then.
# Only when PASSIVE checkpoints cannot catch up (readers keep old snapshots) and this much is
# left behind does one TRUNCATE checkpoint run: it holds writers back while it waits for
# readers, so it waits at most TRUNCATE_WAIT_MS and otherwise tries again next round.
TRUNCATE_ABOVE = WAL_SIZE_LIMIT
TRUNCATE_WAIT_MS = 20


class WalCheckpointer:
    def __init__(self, path: Path, interval: float = INTERVAL, *, thread: bool = True) -> None:
        self.path = path
        self.interval = interval
        self.truncated = 0  # TRUNCATE checkpoints run (tests and benchmarks read it)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout={TRUNCATE_WAIT_MS}")
        self._page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if thread:
            self._thread = threading.Thread(target=self._run, name=f"checkpoint {path.name}")
            self._thread.daemon = True  # never holds a process open: checkpoints only optimise
            self._thread.start()

    def step(self) -> None:
        """One round: copy what the WAL holds into the database, without blocking writers."""
        busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if copied >= frames or (frames - copied) * self._page_size <= TRUNCATE_ABOVE:
            return
        # Busy (a row saying so, or an error) when readers still hold old snapshots after
        # the short wait: the next round tries again.
        try:
            busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:
            log.debug("truncating checkpoint of %s postponed: %s", self.path, exc)
            return
        if not busy:
            self.truncated += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except sqlite3.Error as exc:  # busy or locked now: the next round catches up
                log.debug("checkpoint of %s skipped: %s", self.path, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._conn.close()
