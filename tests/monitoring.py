"""Real Prometheus and Alertmanager (Debian's) for tests, on free loopback ports.

Each starts from a config the test builds (it points at a gateway the test serves), keeps
its data in a temporary folder, and is stopped by PID. Async context managers: the test's
gateway serves on the same event loop, so waiting must not block it. Missing binaries skip
the test, or fail it under CI (servers.missing).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from servers import missing
from support import free_port, stop_process, wait_until

START_SECONDS = 30.0


def need(binary: str, package: str) -> str:
    found = shutil.which(binary) or (
        f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None
    )
    if found is None:
        missing(binary, f"run `make system-deps` or apt-get install {package}")
    return found


@pytest.fixture
def promtool() -> str:
    """Prometheus' rule checker (Debian's prometheus package ships it)."""
    return need("promtool", "prometheus")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _start(
    binary: str, config: dict[str, Any], folder: Path, args: list[str]
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Write `config` to FOLDER/NAME.yml and start `binary` on a free port with it and
    `args` ({port} and {folder} filled in); the process, its URL and its log."""
    name = Path(binary).name
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / f"{name}.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    filled = [a.format(port=port, folder=folder) for a in args]
    log = folder / f"{name}.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [binary, f"--config.file={config_file}", *filled],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}", log


@contextlib.asynccontextmanager
async def _running(
    binary: str, config: dict[str, Any], folder: Path, args: list[str]
) -> AsyncIterator[str]:
    process, url, log = _start(binary, config, folder, args)
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:

            async def ready() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"{binary} exited with {process.returncode}: {_tail(log)}")
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get(f"{url}/-/ready")).status_code == 200
                return False

            await wait_until(ready, START_SECONDS, f"{binary} ready")
        yield url
    finally:
        if stop_process(process) not in (0, -15):
            print(_tail(log))


def prometheus(config: dict[str, Any], folder: Path) -> contextlib.AbstractAsyncContextManager[str]:
    """Prometheus with `config` (prometheus.yml as a dict); yields its URL."""
    args = [
        "--storage.tsdb.path={folder}/data",
        "--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return _running(need("prometheus", "prometheus"), config, folder, args)


def alertmanager(
    config: dict[str, Any], folder: Path
) -> contextlib.AbstractAsyncContextManager[str]:
    """Alertmanager with `config`, gossip off; yields its URL."""
    args = [
        "--storage.path={folder}/data",
        "--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    binary = need("prometheus-alertmanager", "prometheus-alertmanager")
    return _running(binary, config, folder, args)


async def query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    """An instant query's result; fails the test when Prometheus refuses the expression."""
    response = await client.get("/api/v1/query", params={"query": expr})
    body = response.json()
    assert response.status_code == 200, (expr, body)
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def scraped(client: httpx.AsyncClient, job: str = "nuvem") -> bool:
    """Whether Prometheus has scraped `job` successfully at least once."""
    return bool(await query(client, f'up{{job="{job}"}} == 1'))
