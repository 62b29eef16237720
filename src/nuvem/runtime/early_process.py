"""A worker process started before the event loop, served to the runtime like one it spawned.

`nuvem up` starts the stack's pre-started workers first thing, so they import torch while
the gateway imports its own modules; only later does an event loop run. This wraps the
`subprocess.Popen` so the warm pool and the local runtime use it as they use an asyncio
subprocess: `pid`, `returncode`, `stdout`/`stderr` streams, `wait()`, `send_signal()`,
`kill()`. Its exit is seen through a pidfd on the loop, so no thread waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from typing import IO


class EarlyProcess:
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self._stdout: asyncio.StreamReader | None = None
        self._stderr: asyncio.StreamReader | None = None
        self._exited: asyncio.Event | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def stdout(self) -> asyncio.StreamReader | None:
        return self._stdout

    @property
    def stderr(self) -> asyncio.StreamReader | None:
        return self._stderr

    async def attach(self) -> None:
        """Read its pipes and watch its exit on the running loop; once, before handing it out."""
        if self._exited is not None:
            return
        loop = asyncio.get_running_loop()
        self._stdout = await _reader(loop, self.popen.stdout)
        self._stderr = await _reader(loop, self.popen.stderr)
        exited = self._exited = asyncio.Event()
        try:
            pidfd = os.pidfd_open(self.popen.pid)
        except ProcessLookupError:
            exited.set()
            return

        def readable() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self.popen.wait()  # it has ended: this only reaps it
            exited.set()

        loop.add_reader(pidfd, readable)

    async def wait(self) -> int:
        if self._exited is None:
            await self.attach()
        assert self._exited is not None
        await self._exited.wait()
        return self.popen.wait()

    def send_signal(self, signal: int) -> None:
        if self.popen.poll() is not None:
            raise ProcessLookupError(self.popen.pid)
        self.popen.send_signal(signal)

    def kill(self) -> None:
        if self.popen.poll() is not None:
            raise ProcessLookupError(self.popen.pid)
        self.popen.kill()

    def end(self) -> None:
        """Kill it and reap it without a loop; its pipes close unless a loop reads them."""
        with contextlib.suppress(ProcessLookupError):
            self.kill()
        self.popen.wait()
        if self._exited is None:
            for pipe in (self.popen.stdout, self.popen.stderr):
                if pipe is not None:
                    pipe.close()


async def _reader(
    loop: asyncio.AbstractEventLoop, pipe: IO[bytes] | None
) -> asyncio.StreamReader | None:
    if pipe is None:
        return None
    reader = asyncio.StreamReader()
    with contextlib.suppress(OSError):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader
