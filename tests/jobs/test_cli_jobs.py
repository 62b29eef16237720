"""`nuvem jobs ...` against a real `nuvem up`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway_process import ADMIN_PASSWORD, GatewayProcess, kill_workers
from nuvem.errors import PayloadTooLarge
from nuvem.gateway.asgi import MAX_BODY

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

HANDLER = """
import time


def echo(req):
    return req.body


def slow(req):
    time.sleep(float(req.query.get("seconds", "5")))
    return "late"


def fail(req):
    raise ValueError("no good")
"""
STACK = """
functions:
  echo: {handler: functions:echo}
  slow: {handler: functions:slow, jobs: {concurrency: 1}}
  fail: {handler: functions:fail}
"""


@pytest.fixture
async def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:  # type: ignore[misc]
    (tmp_path / "functions.py").write_text(textwrap.dedent(HANDLER))
    (tmp_path / "nuvem.yaml").write_text(textwrap.dedent(STACK))
    process = GatewayProcess(tmp_path, tmp_path / "nuvem.yaml", {})
    process.start()
    try:
        for name in ("echo", "slow", "fail"):
            await process.ready(name, 1)
        yield process
    finally:
        process.stop()
        kill_workers(tmp_path)


def nuvem(
    gateway: GatewayProcess, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "NUVEM_URL": gateway.url, "NUVEM_ADMIN_PASSWORD": ADMIN_PASSWORD}
    return subprocess.run(
        [sys.executable, "-m", "nuvem.cli.main", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=60,
    )


async def test_submit_status_result_ls(gateway: GatewayProcess) -> None:
    submitted = nuvem(gateway, "jobs", "submit", "echo", "-d", "hello")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.decode().strip()
    result = nuvem(gateway, "jobs", "result", job_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello"
    status = nuvem(gateway, "jobs", "status", job_id, "--json")
    assert json.loads(status.stdout)["state"] == "succeeded"
    listed = nuvem(gateway, "jobs", "ls", "--function", "echo", "--json")
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]
    table = nuvem(gateway, "jobs", "ls")
    assert job_id in table.stdout.decode()


async def test_submit_wait_and_failure_exit_code(gateway: GatewayProcess) -> None:
    waited = nuvem(gateway, "jobs", "submit", "echo", "--wait", stdin=b"from stdin")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == b"from stdin"
    failed = nuvem(gateway, "jobs", "submit", "fail", "-d", "x", "--wait")
    assert failed.returncode == 7
    assert b"no good" in failed.stdout
    assert b"failed" in failed.stderr


async def test_cancel_and_errors(gateway: GatewayProcess) -> None:
    nuvem(gateway, "jobs", "submit", "slow", "-d", "x")
    queued = nuvem(gateway, "jobs", "submit", "slow", "-d", "x").stdout.decode().strip()
    cancelled = nuvem(gateway, "jobs", "cancel", queued)
    assert cancelled.returncode == 0, cancelled.stderr
    again = nuvem(gateway, "jobs", "cancel", queued)
    assert again.returncode == 5
    assert b"already cancelled" in again.stderr
    assert b"is cancelled" in cancelled.stderr
    missing = nuvem(gateway, "jobs", "status", "no-such-job")
    assert missing.returncode == 4
    assert b"not found" in missing.stderr
    bad = nuvem(gateway, "jobs", "submit", "echo", "--callback-url", "http://169.254.169.254/")
    assert bad.returncode == 2
    assert b"metadata" in bad.stderr
    too_large = b"x" * (MAX_BODY + 1)
    for command in (("jobs", "submit", "echo"), ("invoke", "echo")):
        refused = nuvem(gateway, *command, stdin=too_large)
        assert refused.returncode == PayloadTooLarge.exit_code == 2, refused.stderr
        assert b"larger than 64 MiB" in refused.stderr
