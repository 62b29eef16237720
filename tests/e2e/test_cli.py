"""End-to-end: what a user does with the installed `nuvem` command, against real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import threading
import time
from typing import Any

import httpx
import pytest

from nuvem.runtime.process_stats import alive
from support import Nuvem, block_until, worker_pids

pytestmark = pytest.mark.e2e

STACK = """\
functions:
  echo:
    handler: functions:echo
  hello:
    handler: functions:hello
    scaling: {min: 1, max: 4}
"""

OTHER = """\
functions:
  other:
    handler: functions:other
"""


def listed(nuvem: Nuvem) -> dict[str, dict[str, Any]]:
    """`nuvem ls --json`, by function name."""
    found = json.loads(nuvem.run("ls", "--json").stdout)
    return {f["name"]: f for f in found}


def post(nuvem: Nuvem, name: str, body: bytes = b"", key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with nuvem.client() as client:
        return client.post(f"/function/{name}", content=body, headers=headers)


def test_a_day_with_the_cli(nuvem: Nuvem) -> None:
    nuvem.write("nuvem.yaml", STACK)
    pid = nuvem.up("-f", "nuvem.yaml")
    assert nuvem.healthy()
    nuvem.wait_ready("echo", "hello")

    table = nuvem.run("ls").stdout
    assert re.search(r"^\s*echo\s+ready\s+1/1", table, re.M), table
    assert re.search(r"^\s*hello\s+ready\s+1/1", table, re.M), table

    created = nuvem.run("keys", "create", "--functions", "echo").stdout
    assert created.endswith("\n"), created
    assert len(created.splitlines()) == 1, created
    key = created.strip()
    assert key.startswith("nv_")

    answer = post(nuvem, "echo", b"a body, as it came", key)
    assert answer.status_code == 200
    assert answer.content == b"a body, as it came"

    other = post(nuvem, "hello", key=key)
    assert other.status_code == 403
    assert "may not invoke 'hello'" in other.json()["error"]

    anonymous = post(nuvem, "echo", b"hi")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/json"
    assert "needs an API key" in anonymous.json()["error"]

    assert nuvem.run("invoke", "echo", "-d", "hi").stdout == "hi"

    scaled = nuvem.run("scale", "hello", "3")
    assert "scaling to 3" in scaled.stderr
    block_until(
        lambda: listed(nuvem)["hello"]["availableReplicas"] == 3,
        60,
        "3 hello replicas in `nuvem ls --json`",
    )

    logs = nuvem.run("logs", "hello", "--tail", "5").stdout.splitlines()
    assert 1 <= len(logs) <= 5, logs
    assert all(re.match(r"\d\d:\d\d:\d\d\.\d{3} \S+ ", line) for line in logs), logs
    assert any("replica ready" in line or "scaled hello" in line for line in logs), logs

    events = nuvem.run("events").stdout
    assert "deployed echo" in events
    assert "deployed hello" in events
    assert "scaled hello from 1 to 3 replicas" in events
    as_json = json.loads(nuvem.run("events", "--json").stdout)
    (scaled,) = [e for e in as_json if "from 1 to 3" in e["message"]]
    assert scaled["function"] == "hello"
    assert isinstance(scaled["data"], dict)
    detail = nuvem.run("events", "--detail", str(scaled["id"])).stdout
    assert f"event     {scaled['id']}" in detail
    assert "function  hello" in detail
    assert nuvem.run("events", "--detail", "999999", check=False).returncode == 4

    keys = json.loads(nuvem.run("keys", "ls", "--json").stdout)
    (record,) = keys
    assert key.startswith(f"nv_{record['id']}_")
    assert key not in json.dumps(keys)
    assert record["rate"] is None  # the gateway's default
    limited = nuvem.run("keys", "limit", record["id"], "--rate", "5", "--burst", "7")
    assert "5/s, 7 at once" in limited.stderr
    assert re.search(rf"^\s*{record['id']}\s.*5/s, 7 at once", nuvem.run("keys", "ls").stdout, re.M)
    nuvem.run("keys", "revoke", record["id"])

    # Another gateway may cache a key for up to 5 s; ours forgets it at once, but poll.
    def refused() -> httpx.Response | None:
        answer = post(nuvem, "echo", b"hi", key)
        return answer if answer.status_code == 401 else None

    revoked = block_until(refused, 15, "the revoked key to be refused")
    assert revoked is not None
    assert "unknown or revoked" in revoked.json()["error"]
    # Revoking again is no error (a revoked key stays revoked); a key never made is one.
    assert nuvem.run("keys", "revoke", record["id"]).returncode == 0
    unknown = nuvem.run("keys", "revoke", "k0nosuchkey", check=False)
    assert unknown.returncode == 4, unknown.stderr
    assert "'k0nosuchkey' does not exist" in unknown.stderr

    typo = nuvem.run("keys", "create", "--functions", "echo,ehco")
    assert typo.stdout.startswith("nv_")
    assert "no function 'ehco' is deployed (deployed: echo, hello)" in typo.stderr
    assert "'echo'" not in typo.stderr

    stopped = nuvem.run("down")
    assert "nuvem stopped" in stopped.stderr
    assert not alive(pid)
    assert not nuvem.pid_file.exists()
    with pytest.raises(httpx.ConnectError), nuvem.client() as client:
        client.get("/healthz")


def test_deploy_adds_functions_and_reports_errors(nuvem: Nuvem) -> None:
    nuvem.write("nuvem.yaml", STACK.split("  hello:")[0])
    nuvem.up("-f", "nuvem.yaml")

    nuvem.write("other.yaml", OTHER)
    deployed = nuvem.run("deploy", "-f", "other.yaml")
    assert "other: 1/1 replicas ready" in deployed.stderr
    # `deploy` waited: the function serves at once.
    assert nuvem.function("other")["status"] == "ready"
    assert nuvem.run("invoke", "other").stdout == "other"
    assert set(listed(nuvem)) == {"echo", "other"}

    # The same stack again: nothing restarts and no "updated" event says otherwise.
    events_before = nuvem.run("events", "--json").stdout
    again = nuvem.run("deploy", "-f", "other.yaml")
    assert "other: unchanged" in again.stderr
    assert nuvem.run("events", "--json").stdout == events_before

    # Edited code with the same stack entry is a change: the replicas roll over to it.
    handlers = nuvem.root / "functions.py"
    handlers.write_text(handlers.read_text().replace('return "other"', 'return "other, edited"'))
    edited = nuvem.run("deploy", "-f", "other.yaml")
    assert "other: updated" in edited.stderr
    assert nuvem.run("invoke", "other").stdout == "other, edited"

    # Another project's stack with a function of the same name does not take it over.
    (nuvem.root / "elsewhere").mkdir()
    (nuvem.root / "elsewhere" / "functions.py").write_text(
        (nuvem.root / "functions.py").read_text()
    )
    nuvem.write("elsewhere/nuvem.yaml", OTHER)
    taken = nuvem.run("deploy", "-f", "elsewhere/nuvem.yaml", check=False)
    assert taken.returncode == 5, taken.stderr
    assert f"other (deployed from {nuvem.root})" in taken.stderr
    assert "--replace" in taken.stderr
    assert nuvem.function("other")["spec"]["root"] == str(nuvem.root)
    nuvem.run("deploy", "-f", "elsewhere/nuvem.yaml", "--replace")
    assert nuvem.function("other")["spec"]["root"] == str(nuvem.root / "elsewhere")

    nuvem.write(
        "broken.yaml",
        """\
        functions:
          broken:
            handler: functions:Broken
          missing:
            handler: functions:no_such_handler
        """,
    )
    failed = nuvem.run("deploy", "-f", "broken.yaml", "--timeout", "60", check=False)
    assert failed.returncode == 8, failed.stderr
    # Every function's problem in one go, not only the first one's.
    assert "2 of 2 functions failed to deploy" in failed.stderr
    assert "broken cannot start" in failed.stderr
    assert "the model weights are missing" in failed.stderr
    assert "missing cannot start" in failed.stderr

    typo = nuvem.write(
        "typo.yaml",
        """\
        functions:
          typo:
            handler: functions:echo
            requirments: [numpy]
        """,
    )
    # A listening socket stands in for the gateway: the command must never connect to it.
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen()
        url = f"http://127.0.0.1:{trap.getsockname()[1]}"
        rejected = nuvem.run("deploy", "-f", str(typo), env={"NUVEM_URL": url}, check=False)
        trap.setblocking(False)
        with pytest.raises(BlockingIOError):
            trap.accept()
    assert rejected.returncode == 2, rejected.stderr
    assert f"{typo}:4:" in rejected.stderr
    assert "functions.typo.requirments" in rejected.stderr
    assert "did you mean 'requirements'?" in rejected.stderr
    assert "typo" not in listed(nuvem)


def test_restart_brings_back_functions_scale_and_keys(nuvem: Nuvem) -> None:
    del nuvem.env["NUVEM_ADMIN_PASSWORD"]  # the generated password file must survive
    nuvem.write("nuvem.yaml", STACK)
    nuvem.write("other.yaml", OTHER)
    first = nuvem.up("-f", "nuvem.yaml")
    nuvem.run("deploy", "-f", "other.yaml")
    key = nuvem.run("keys", "create", "--functions", "other,echo").stdout.strip()
    assert post(nuvem, "other", key=key).status_code == 200
    nuvem.run("scale", "hello", "2")
    password = nuvem.password_file.stat()
    secret = nuvem.password_file.read_text()
    nuvem.run("down")
    assert not alive(first)

    second = nuvem.up()  # no -f: everything comes from the state folder
    assert second != first

    def restored() -> bool:
        found = listed(nuvem)
        return set(found) == {"echo", "hello", "other"} and all(
            f["status"] == "ready" for f in found.values()
        )

    block_until(restored, 60, "echo, hello and other ready again")
    hello = listed(nuvem)["hello"]
    assert (hello["replicas"], hello["availableReplicas"]) == (2, 2)

    answer = post(nuvem, "other", key=key)
    assert (answer.status_code, answer.text) == (200, "other")
    assert post(nuvem, "echo", b"back", key=key).content == b"back"

    assert nuvem.password_file.read_text() == secret
    after = nuvem.password_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (password.st_ino, password.st_mtime_ns)


def test_generated_admin_password(nuvem: Nuvem) -> None:
    del nuvem.env["NUVEM_ADMIN_PASSWORD"]
    nuvem.up()

    mode = stat.S_IMODE(nuvem.password_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    password = nuvem.password_file.read_text().strip()
    assert len(password) >= 16

    # The CLI reads the file when NUVEM_ADMIN_PASSWORD is unset.
    assert json.loads(nuvem.run("ls", "--json").stdout) == []

    with nuvem.client(auth=("admin", password)) as client:
        assert client.get("/system/functions").status_code == 200
    with nuvem.client(auth=("admin", "not-the-password")) as client:
        wrong = client.get("/system/functions")
    assert wrong.status_code == 401
    assert wrong.headers["content-type"] == "application/json"
    assert "admin credentials are wrong" in wrong.json()["error"]

    refused = nuvem.run("ls", env={"NUVEM_ADMIN_PASSWORD": "not-the-password"}, check=False)
    assert refused.returncode == 3
    assert "NUVEM_ADMIN_PASSWORD" in refused.stderr


def test_ctrl_c_drains_calls_in_flight(nuvem: Nuvem) -> None:
    nuvem.write(
        "nuvem.yaml",
        """\
        functions:
          slow:
            handler: functions:slow
            timeout: 30s
        """,
    )
    process = nuvem.start("-f", "nuvem.yaml")
    block_until(lambda: nuvem.healthy() or process.poll() is not None, 60, "the gateway")
    assert process.poll() is None, nuvem.log(0)
    nuvem.wait_ready("slow")

    with nuvem.admin() as admin:
        lines = admin.get("/system/logs", params={"name": "slow"}).text.splitlines()
    workers = {
        int(match.group(1))
        for line in lines
        if (match := re.search(r"replica ready \(pid (\d+)", json.loads(line)["text"]))
    }
    assert workers
    assert all(alive(pid) for pid in workers)

    answers: list[httpx.Response] = []

    def call() -> None:
        with nuvem.admin() as admin:
            answers.append(admin.post("/function/slow", params={"seconds": "2"}))

    caller = threading.Thread(target=call)
    caller.start()
    block_until(lambda: nuvem.function("slow")["inflight"] == 1, 10, "the call in flight")
    assert caller.is_alive(), "the call ended before Ctrl-C: it was not in flight"
    process.send_signal(signal.SIGINT)

    caller.join(30)
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert answer.json()["pid"] in workers

    assert process.wait(60) == 0, nuvem.log(0)
    assert "nuvem stopped" in nuvem.log(0)
    assert not nuvem.pid_file.exists()
    block_until(lambda: not any(alive(pid) for pid in workers), 10, "the workers to exit")
    assert not nuvem.healthy()
    assert os.path.exists(nuvem.state_dir / "nuvem.db")
    assert "press Ctrl-C again to stop at once" in nuvem.log(0)


def test_a_second_ctrl_c_stops_at_once_answers_503_and_leaves_no_worker(nuvem: Nuvem) -> None:
    nuvem.write(
        "nuvem.yaml",
        """\
        functions:
          slow:
            handler: functions:slow
            timeout: 60s
            scaling: {min: 2, max: 2}
        """,
    )
    process = nuvem.start("-f", "nuvem.yaml")
    block_until(lambda: nuvem.healthy() or process.poll() is not None, 60, "the gateway")
    assert process.poll() is None, nuvem.log(0)
    nuvem.wait_ready("slow", replicas=2)
    assert worker_pids(nuvem.root)

    answers: list[httpx.Response] = []

    def call() -> None:
        with nuvem.admin() as admin:
            answers.append(admin.post("/function/slow", params={"seconds": "50"}))

    callers = [threading.Thread(target=call) for _ in range(2)]
    for caller in callers:
        caller.start()
    block_until(lambda: nuvem.function("slow")["inflight"] == 2, 10, "two calls in flight")
    process.send_signal(signal.SIGINT)
    block_until(lambda: "press Ctrl-C again" in nuvem.log(0), 10, "the draining notice")
    stopped_at = time.monotonic()
    process.send_signal(signal.SIGINT)

    for caller in callers:
        caller.join(20)
    assert len(answers) == 2
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert "stopping at once" in answer.json()["error"]
    assert process.wait(20) == 0, nuvem.log(0)
    assert time.monotonic() - stopped_at < 15  # not the 50 s the calls wanted
    block_until(lambda: not worker_pids(nuvem.root), 10, "every worker to exit")
    log = nuvem.log(0)
    assert "Traceback" not in log, log
    assert "CancelledError" not in log, log
    assert "nuvem stopped" in log


def test_logs_dash_f_follows_new_lines(nuvem: Nuvem) -> None:
    nuvem.write("nuvem.yaml", STACK)
    nuvem.up("-f", "nuvem.yaml")
    nuvem.wait_ready("echo", "hello")
    with nuvem.follow("logs", "hello", "-f", "--tail", "1") as lines:
        block_until(lambda: len(lines) >= 1, 30, "the last line")
        nuvem.run("scale", "hello", "2")  # a new replica logs as it starts
        block_until(lambda: len(lines) >= 2, 60, f"a new line after {lines}")
