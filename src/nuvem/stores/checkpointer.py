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

from nuvem.stores.engines import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)
INTERVAL = 0.1
# Under a steady stream of writes a PASSIVE checkpoint never catches the WAL's end, so the
# file would only grow; past this size one TRUNCATE checkpoint (which waits for writers,
# briefly, as most frames are copied already) starts it over.
TRUNCATE_ABOVE = 16 * 2**20


class WalCheckpointer:
    def __init__(self, path: Path, interval: float = INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {path.name}")
        self._thread.daemon = True  # never holds a process open; a checkpoint is an optimisation
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    if self._wal_size() > TRUNCATE_ABOVE:
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as exc:  # busy or locked now: the next round catches up
                    log.debug("checkpoint of %s skipped: %s", self.path, exc)
        finally:
            conn.close()

    def _wal_size(self) -> int:
        try:
            return self.path.with_name(self.path.name + "-wal").stat().st_size
        except OSError:
            return 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
