"""`WorkerProcess`: the process side of a replica, as the framed replica needs it.

The local runtime wraps the asyncio subprocess it spawned (`LocalProcess`); a cluster
runtime implements the same few members through the actor that owns the worker on its
node (signals become actor calls, the exit code arrives when the actor reports it).
"""

from __future__ import annotations

import contextlib
import signal
from typing import Protocol

from nuvem.runtime.process_stats import rss_bytes


class WorkerProcess(Protocol):
    @property
    def pid(self) -> int: ...  # on the node it runs on
    @property
    def returncode(self) -> int | None: ...  # None while it runs (or when unknown)
    @property
    def lost(self) -> str | None: ...  # why it ended when no exit code can tell (node lost)

    async def wait(self) -> int | None:
        """Return once it has ended: its exit code, or None when that cannot be known
        (its node was lost)."""
        ...

    def terminate(self) -> None:
        """Ask it to drain and exit (SIGTERM). No error when it has already ended."""
        ...

    def kill(self) -> None:
        """End it at once (SIGKILL). No error when it has already ended."""
        ...

    def rss(self) -> int | None:
        """Resident memory in bytes, or None when it cannot be read. Must not block."""
        ...


def exit_cause(returncode: int | None) -> str:
    """Say how a process ended, in words: `killed by SIGKILL`, `exited with code 3`."""
    if returncode is None:
        return "connection to the replica was lost"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exited with code {returncode}"


class Spawned(Protocol):
    """What a local worker is to its replica: an asyncio subprocess, or a pre-started worker
    begun before the loop (runtime/early_process.py)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...
    def send_signal(self, signal: int) -> None: ...
    def kill(self) -> None: ...


class LocalProcess:
    """A worker spawned on this machine."""

    def __init__(self, process: Spawned) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def lost(self) -> str | None:
        return None  # a local process always leaves its exit code

    async def wait(self) -> int | None:
        return await self.process.wait()

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def rss(self) -> int | None:
        return rss_bytes(self.process.pid)


async def end(process: WorkerProcess) -> None:
    """Kill it unless it has ended, and wait until it has."""
    if process.returncode is None:
        process.kill()
    await process.wait()
