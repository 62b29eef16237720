"""End-to-end: a state folder belongs to one gateway, and the CLI finds that gateway by it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from nuvem.cli.state_lock import GatewayRecord, write_record
from nuvem.errors import LifecycleError
from nuvem.runtime.process_stats import alive
from support import Nuvem, block_until, kill_workers

pytestmark = pytest.mark.e2e

ECHO = """\
functions:
  echo:
    handler: functions:echo
"""
OTHER = """\
functions:
  other:
    handler: functions:other
"""


def events(nuvem: Nuvem) -> list[dict[str, object]]:
    with nuvem.admin() as client:
        found: list[dict[str, object]] = client.get("/system/events").json()
    return found


def test_commands_given_a_state_folder_talk_to_its_gateway(nuvem: Nuvem, tmp_path: Path) -> None:
    second = Nuvem(tmp_path, state="state-b")
    for platform in (nuvem, second):
        del platform.env["NUVEM_URL"]  # the state folder alone must lead to the gateway
    try:
        nuvem.write("a.yaml", ECHO)
        nuvem.write("b.yaml", OTHER)
        first_pid = nuvem.up("-f", "a.yaml")
        started = second.run("up", "--port", str(second.port), "--detach", "-f", "b.yaml")
        second_pid = int(second.pid_file.read_text())
        second.pids.add(second_pid)
        # Not on the default port: it says how other shells reach it.
        assert f"export NUVEM_URL={second.url}" in started.stderr, started.stderr
        nuvem.wait_ready("echo")
        second.wait_ready("other")

        state_b = str(second.state_dir)
        listed = json.loads(nuvem.run("ls", "--json", "--state-dir", state_b).stdout)
        assert [f["name"] for f in listed] == ["other"]
        by_env = json.loads(second.run("ls", "--json").stdout)  # NUVEM_STATE_DIR
        assert [f["name"] for f in by_env] == ["other"]
        # --url (and NUVEM_URL) still win over the state folder's record.
        chosen = nuvem.run("--url", nuvem.url, "ls", "--json", "--state-dir", state_b)
        assert [f["name"] for f in json.loads(chosen.stdout)] == ["echo"]
        by_variable = second.run("ls", "--json", env={"NUVEM_URL": nuvem.url})
        assert [f["name"] for f in json.loads(by_variable.stdout)] == ["echo"]

        stopped = nuvem.run("down", "--state-dir", state_b, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert not alive(second_pid)
        assert alive(first_pid)
        assert nuvem.healthy()
    finally:
        second.stop()


def test_a_second_up_on_a_state_folder_fails_before_touching_it(
    nuvem: Nuvem, tmp_path: Path
) -> None:
    nuvem.write("nuvem.yaml", ECHO)
    pid = nuvem.up("-f", "nuvem.yaml")
    nuvem.wait_ready("echo")
    before = events(nuvem)
    same_state = Nuvem(tmp_path)  # the same state folder, another port
    try:
        for args in ((), ("--detach",)):
            for port in (nuvem.port, same_state.port):
                refused = same_state.run(
                    "up", "--port", str(port), "-f", "nuvem.yaml", *args, check=False, timeout=30
                )
                assert refused.returncode == LifecycleError.exit_code, refused.stderr
                assert "already running" in refused.stderr
                assert f"on {nuvem.url} (pid {pid})" in refused.stderr
                assert "gateway on" not in refused.stderr  # no banner
                assert "address already in use" not in refused.stderr
        assert same_state.processes == []
        assert int(nuvem.pid_file.read_text()) == pid
        assert events(nuvem) == before
        assert nuvem.function("echo")["replicas"] == 1
    finally:
        same_state.stop()


def test_a_killed_gateway_leaves_no_stale_lock(nuvem: Nuvem) -> None:
    nuvem.start()
    block_until(nuvem.healthy, 60, "the gateway healthy")
    nuvem.kill()
    kill_workers(nuvem.state_dir)
    nuvem.start()
    block_until(nuvem.healthy, 60, f"the gateway healthy again:\n{nuvem.log()}")


def test_a_port_in_use_is_a_nuvem_error(nuvem: Nuvem) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", nuvem.port))
        taken.listen()
        for args in ((), ("--detach",)):
            refused = nuvem.run("up", "--port", str(nuvem.port), *args, check=False, timeout=30)
            assert refused.returncode == LifecycleError.exit_code, refused.stderr
            assert f"port {nuvem.port} is already in use on 127.0.0.1" in refused.stderr
            assert "--port" in refused.stderr
            assert "Errno" not in refused.stderr
            assert "gateway on" not in refused.stderr
    assert not nuvem.pid_file.exists()


def test_down_refuses_a_state_folder_whose_gateway_is_gone(nuvem: Nuvem, tmp_path: Path) -> None:
    """A killed gateway's record still names its URL; another folder's gateway may have it now."""
    nuvem.start()
    block_until(nuvem.healthy, 60, "the gateway healthy")
    gone = Nuvem(tmp_path, state="state-gone")
    del gone.env["NUVEM_URL"]
    gone.state_dir.mkdir(parents=True, exist_ok=True)
    write_record(gone.state_dir, GatewayRecord(url=nuvem.url, pid=2**22 + 1))
    try:
        refused = gone.run("down", check=False, timeout=30)
        assert refused.returncode == LifecycleError.exit_code, refused.stderr
        assert f"no nuvem gateway is running with the state folder {gone.state_dir}" in " ".join(
            refused.stderr.split()
        )
        assert "--url" in refused.stderr
        assert nuvem.healthy()  # the other folder's gateway was left alone
    finally:
        gone.stop()
