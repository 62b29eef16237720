"""A real image registry for tests: Debian's docker-registry (distribution 2.8) on a free
loopback port, plain HTTP, its storage in a temporary folder, stopped by its PID.

Skips with the reason when the binary is missing, and fails under CI (servers.missing).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from servers import missing
from support import block_until, die_with_parent, free_port, stop_process

START_SECONDS = 30.0


@contextlib.contextmanager
def registry_server() -> Iterator[str]:
    """host:port of a running registry that holds nothing yet."""
    binary = shutil.which("docker-registry")
    if binary is None:
        missing("docker-registry", "run `make system-deps` or apt-get install docker-registry")
    folder = Path(tempfile.mkdtemp(prefix="nuvem-registry-"))
    address = f"127.0.0.1:{free_port()}"
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {folder / 'data'}}}}}\n"
        f"http: {{addr: '{address}'}}\n"
    )
    log = folder / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text(errors='replace')}")
        try:
            return httpx.get(f"http://{address}/v2/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        block_until(answers, START_SECONDS, "docker-registry to start")
        yield address
    finally:
        stop_process(process, signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)
