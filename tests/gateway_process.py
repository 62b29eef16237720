"""A `nuvem up` gateway in its own process, for tests that kill it (importable by name)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from support import free_port

ADMIN_PASSWORD = "jobs-admin-password"


class GatewayProcess:
    def __init__(
        self, root: Path, stack: Path, env: dict[str, str], port: int = 0, state: str = "state"
    ) -> None:
        self.root = root
        self.stack = stack
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = root / state
        self.env = {
            **os.environ,
            "NUVEM_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "NUVEM_STATE_DIR": str(self.state),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / f"gateway-{self.port}.log"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "nuvem.cli.main",
                    "up",
                    "-f",
                    str(self.stack),
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def ready(self, function: str, replicas: int, within: float = 60) -> None:
        """Poll until `function` has `replicas` ready; fail at once if the process exits."""
        async with httpx.AsyncClient(base_url=self.url, auth=("admin", ADMIN_PASSWORD)) as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise AssertionError(f"gateway exited:\n{self.log.read_text()[-3000:]}")
                try:
                    found = (await http.get(f"/system/function/{function}")).json()
                    if found.get("availableReplicas", 0) >= replicas:
                        return
                except (httpx.HTTPError, ValueError):
                    pass
                if loop.time() > deadline:
                    raise AssertionError(f"gateway not ready:\n{self.log.read_text()[-3000:]}")
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def worker_pids(root: Path) -> list[int]:
    """Worker processes serving handlers from `root` (whoever their parent is now)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"nuvem.runtime.worker" in cmdline and str(root).encode() in b" ".join(cmdline):
            found.append(int(entry.name))
    return found


def kill_workers(root: Path) -> None:
    for pid in worker_pids(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
