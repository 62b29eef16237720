"""`nuvem jobs ...` against a real `nuvem up`."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nuvem.errors import Conflict, PayloadTooLarge
from nuvem.gateway.asgi import MAX_BODY
from support import Nuvem, app_folder

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


def method(req):
    return req.method
"""
STACK = """
functions:
  echo: {handler: functions:echo}
  slow: {handler: functions:slow, jobs: {concurrency: 1}}
  fail: {handler: functions:fail}
  method: {handler: functions:method}
"""


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Nuvem]:
    with app_folder(tmp_path, HANDLER, STACK) as root:
        process = Nuvem(root)
        process.start("-f", "nuvem.yaml", "--log-level", "warning")
        try:
            for name in ("echo", "slow", "fail", "method"):
                await process.ready(name, 1)
            yield process
        finally:
            process.stop()


def nuvem(gateway: Nuvem, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return gateway.run(*args, input=stdin, check=False, timeout=60)


async def test_submit_status_result_ls(gateway: Nuvem) -> None:
    submitted = nuvem(gateway, "jobs", "submit", "echo", "-d", "hello")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    result = nuvem(gateway, "jobs", "result", job_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello"
    status = nuvem(gateway, "jobs", "status", job_id, "--json")
    assert json.loads(status.stdout)["state"] == "succeeded"
    listed = nuvem(gateway, "jobs", "ls", "--function", "echo", "--json")
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]
    table = nuvem(gateway, "jobs", "ls")
    assert job_id in table.stdout


async def test_method_option_reaches_the_handler(gateway: Nuvem) -> None:
    queued = nuvem(gateway, "jobs", "submit", "method", "-X", "put", "-d", "x", "--wait")
    assert (queued.returncode, queued.stdout) == (0, "PUT"), queued.stderr
    called = nuvem(gateway, "invoke", "method", "-X", "DELETE", "-d", "")
    assert (called.returncode, called.stdout.strip()) == (0, "DELETE"), called.stderr
    for command in (("jobs", "submit"), ("invoke",)):
        helped = nuvem(gateway, *command, "--help")
        assert "HTTP method the function's handler sees" in " ".join(helped.stdout.split())


async def test_submit_wait_and_failure_exit_code(gateway: Nuvem) -> None:
    waited = nuvem(gateway, "jobs", "submit", "echo", "--wait", stdin="from stdin")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout == "from stdin"
    failed = nuvem(gateway, "jobs", "submit", "fail", "-d", "x", "--wait")
    assert failed.returncode == 7
    assert "no good" in failed.stdout
    assert "failed" in failed.stderr


async def test_result_of_a_cancelled_job_ends_at_once(gateway: Nuvem) -> None:
    nuvem(gateway, "jobs", "submit", "slow", "-d", "x")
    queued = nuvem(gateway, "jobs", "submit", "slow", "-d", "x").stdout.strip()
    assert nuvem(gateway, "jobs", "cancel", queued).returncode == 0
    started = time.monotonic()
    result = gateway.run("jobs", "result", queued, check=False, timeout=20)
    assert time.monotonic() - started < 10  # it polled before, for the whole --timeout
    assert result.returncode == Conflict.exit_code, result.stderr
    assert f"job {queued} is cancelled" in result.stderr
    assert "yet" not in result.stderr


async def test_cancel_and_errors(gateway: Nuvem) -> None:
    nuvem(gateway, "jobs", "submit", "slow", "-d", "x")
    queued = nuvem(gateway, "jobs", "submit", "slow", "-d", "x").stdout.strip()
    cancelled = nuvem(gateway, "jobs", "cancel", queued)
    assert cancelled.returncode == 0, cancelled.stderr
    again = nuvem(gateway, "jobs", "cancel", queued)
    assert again.returncode == 5
    assert "already cancelled" in again.stderr
    assert "is cancelled" in cancelled.stderr
    missing = nuvem(gateway, "jobs", "status", "no-such-job")
    assert missing.returncode == 4
    assert "not found" in missing.stderr
    bad = nuvem(gateway, "jobs", "submit", "echo", "--callback-url", "http://169.254.169.254/")
    assert bad.returncode == 2
    assert "metadata" in bad.stderr
    too_large = "x" * (MAX_BODY + 1)
    for command in (("jobs", "submit", "echo"), ("invoke", "echo")):
        refused = nuvem(gateway, *command, stdin=too_large)
        assert refused.returncode == PayloadTooLarge.exit_code == 2, refused.stderr
        assert "larger than 64 MiB" in refused.stderr
