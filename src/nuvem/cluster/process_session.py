"""A `ray start --block` child and everything it starts, kept in one session.

nuvem stops its own Ray processes by their session, never with `ray stop`, which kills
every Ray process of the machine (other nodes, other users' clusters). The raylet puts
each worker in a process group of its own, but all stay in the session the child began.
Liveness reads /proc, because killed processes here can linger as zombies that `kill -0`
still reports as running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# How often a stopping session is looked at: processes outside any event loop, so polled.
_POLL = 0.05


class ProcessSession:
    """A child started in a session of its own; its pid is the session's id."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @classmethod
    def spawn(
        cls, argv: Sequence[str], environ: Mapping[str, str], log_path: Path
    ) -> ProcessSession:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(environ),
                # Its own session: Ctrl-C in the terminal reaches nuvem, which leaves the
                # cluster in order, instead of reaching every Ray process at once.
                start_new_session=True,
            )
        return cls(process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        """The exit code of the `ray start` process, or None while it runs."""
        return self.process.poll()

    def members(self) -> list[int]:
        return session_members(self.pid)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float, sig: int = signal.SIGTERM) -> int | None:
        """Signal the leader, wait up to `grace` seconds for the whole session to end, then
        SIGKILL what is left; return the leader's exit code."""
        self.signal(sig)
        deadline = time.monotonic() + grace
        while self.members() and time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(_POLL)
        self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL every process of the session and wait until none runs."""
        # The leader's group first, in one call: the raylet and its agents die together,
        # as when the machine is lost, instead of the raylet reporting an agent's death.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for pid in {self.pid, *self.members()}:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(_POLL)
            if not self.members():
                # Dead but maybe not reaped yet (members() counts zombies as gone): reap the
                # leader now, or its Popen warns "still running" whenever it is collected.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(5)
                return
        raise OSError(f"processes {self.members()} of session {self.pid} outlived SIGKILL")

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (ended, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def session_members(sid: int) -> list[int]:
    """Live processes (zombies excluded) of the session `sid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended while we looked
            continue
        # The command name may hold spaces or parentheses: the fields follow the last ')'.
        state, _ppid, _group, session = stat.rpartition(")")[2].split()[:4]
        if int(session) == sid and state != "Z":
            found.append(int(entry.name))
    return found
