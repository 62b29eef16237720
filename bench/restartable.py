"""redis-server and PostgreSQL 15 that the chaos benchmark can restart on the same port and
data, as an operator's restart would (tests/servers.py starts them once per session).

Redis keeps an append-only file (`appendfsync everysec`, the setting an operator running a
job queue uses), so a restart keeps the streams; PostgreSQL stops with a fast shutdown.
As root, PostgreSQL runs as `nobody`, which it requires.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import echo  # free_port, shared with the other benchmarks

PG_BIN = Path(os.environ.get("NUVEM_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_SECONDS = 30.0


class ServerDown(Exception):
    """A server did not start, or did not answer in time."""


def _wait(check: Callable[[], object], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerDown(f"{what} exited with code {process.returncode}")
        try:
            check()
        except Exception:  # not accepting connections yet
            time.sleep(0.05)
            continue
        return
    raise ServerDown(f"{what} did not answer within {START_SECONDS:.0f}s")


class Restartable:
    """One server process; `restart()` stops it the way its operator would and starts it again."""

    name = "server"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = echo.free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> None:
        raise NotImplementedError

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def start(self) -> None:
        self._log = (self.folder / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        _wait(self.ready, self.process, self.name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Redis(Restartable):
    name = "redis-server"

    def __init__(self, folder: Path, binary: str) -> None:
        super().__init__(folder)
        self.binary = binary
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.folder),
        ]  # fmt: skip

    def ready(self) -> None:
        import redis

        with redis.Redis.from_url(self.url, socket_timeout=1) as client:
            client.ping()


class Postgres(Restartable):
    name = "postgres"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.prefix = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        if self.prefix:
            shutil.chown(folder, "nobody")
        self.data = folder / "data"
        initdb = [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
        subprocess.run(
            [*self.prefix, *initdb, "--no-sync", "-E", "UTF8"], check=True, capture_output=True
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def argv(self) -> list[str]:
        return [
            *self.prefix, str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200",
        ]  # fmt: skip

    def ready(self) -> None:
        import psycopg

        psycopg.connect(self.url, connect_timeout=2).close()

    def terminate(self) -> None:
        # The postmaster itself (runuser, its parent, may exit without forwarding): SIGINT is
        # PostgreSQL's fast shutdown, what `pg_ctl restart -m fast` sends.
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            super().terminate()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)


def available() -> str | None:
    """Why the servers backend cannot run here, or None when it can."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (make system-deps)"
    if not (PG_BIN / "postgres").exists():
        return f"PostgreSQL 15 is not installed ({PG_BIN}/postgres; set NUVEM_PG_BIN)"
    return None


@contextlib.contextmanager
def servers() -> Iterator[tuple[Redis, Postgres]]:
    """A started redis-server and PostgreSQL, each in a temporary folder of its own."""
    binary = shutil.which("redis-server")
    if binary is None or (why := available()) is not None:
        raise ServerDown(available() or "redis-server is missing")
    del why
    with contextlib.ExitStack() as stack:
        redis_folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-redis-")))
        pg_folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-pg-")))
        redis, postgres = Redis(redis_folder, binary), Postgres(pg_folder)
        stack.callback(redis.stop)
        stack.callback(postgres.stop)
        redis.start()
        postgres.start()
        yield redis, postgres
