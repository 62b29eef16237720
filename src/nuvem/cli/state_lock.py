"""The lock that makes a state folder one gateway's, and the record the CLI finds it by.

Two gateways on one state folder share one database but not their replicas: each starts its
own copy of every function and neither sees the other's removals. `nuvem up` therefore holds
an exclusive flock on `<state>/nuvem.lock` for as long as it runs. The kernel releases a
flock when its holder dies, however it dies, so a killed gateway leaves no stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from nuvem.errors import LifecycleError

LOCK_FILE = "nuvem.lock"
RECORD_FILE = "gateway.json"


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    """Where the gateway of a state folder listens (kept after it stops: the last one)."""

    url: str
    pid: int


def read_record(state_dir: Path) -> GatewayRecord | None:
    try:
        found = json.loads((state_dir / RECORD_FILE).read_text())
        return GatewayRecord(url=str(found["url"]), pid=int(found["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(state_dir: Path, record: GatewayRecord) -> None:
    # Written whole then renamed: a client reading it never sees half a file.
    path = state_dir / RECORD_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"url": record.url, "pid": record.pid}) + "\n")
    temporary.replace(path)


class AlreadyRunning(LifecycleError):
    """Another gateway holds the state folder."""


class NotRunning(LifecycleError):
    """No gateway holds the state folder."""


class StateLock:
    """The exclusive lock on one state folder; `acquire` fails at once when it is taken."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Python opens descriptors close-on-exec, so workers and Ray processes started by the
        # gateway do not inherit the lock and keep it after the gateway has died.
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._taken() from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def held(self) -> bool:
        """Whether a gateway holds this state folder now (without creating anything)."""
        try:
            fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock this probe may have taken
        return False

    def check(self) -> None:
        """Fail as `acquire` would, without keeping the lock (for `nuvem up --detach`)."""
        self.acquire()
        self.release()

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def _taken(self) -> AlreadyRunning:
        record = read_record(self.state_dir)
        running = f" on {record.url} (pid {record.pid})" if record is not None else ""
        return AlreadyRunning(
            f"a nuvem gateway is already running{running} with the state folder {self.state_dir}",
            f"stop it with `nuvem down --state-dir {self.state_dir}`, or give this one "
            "another --state-dir",
        )
