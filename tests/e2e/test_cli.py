"""End-to-end: what a user does with the installed `nuvem` command, against real processes.

Everything lives in this one module: a conftest.py here would shadow the `conftest` module
that other test folders import by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from nuvem.runtime.process_stats import alive

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "e2e-admin-password"
T = TypeVar("T")

# Handlers every test may deploy; written as `functions.py` next to the stack files.
HANDLERS = """
import os
import time

from nuvem import Response


def echo(req):
    return Response(200, req.body, {"content-type": "application/octet-stream"})


def hello(req):
    return {"message": "hello, " + req.query.get("name", "world"), "pid": os.getpid()}


def other(req):
    return "other"


def slow(req):
    time.sleep(float(req.query.get("seconds", "1.5")))
    return {"pid": os.getpid()}


class Broken:
    def setup(self):
        raise RuntimeError("the model weights are missing")

    def __call__(self, req):
        return "never"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Nuvem:
    """Runs the installed `nuvem` command against one state folder and one port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = root / "state"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NUVEM_")}
        self.env.update(
            NUVEM_URL=self.url,
            NUVEM_ADMIN_PASSWORD=ADMIN_PASSWORD,
            NUVEM_STATE_DIR=str(self.state_dir),
            # Rich wraps stderr at 80 columns when it is not a terminal; error messages
            # naming long tmp paths must stay on one line for the assertions.
            COLUMNS="1000",
        )
        self.pids: set[int] = set()
        self.processes: list[subprocess.Popen[bytes]] = []
        (root / "functions.py").write_text(HANDLERS)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "nuvem.pid"

    @property
    def password_file(self) -> Path:
        return self.state_dir / "admin-password"

    def command(self, *args: str) -> list[str]:
        script = Path(sys.executable).with_name("nuvem")
        if script.exists():
            return [str(script), *args]
        return [sys.executable, "-m", "nuvem.cli.main", *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args),
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"nuvem {' '.join(args)} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def up(self, *args: str) -> int:
        """`nuvem up --detach`; returns the pid of the platform it started."""
        self.run("up", "--port", str(self.port), "--detach", *args)
        pid = int(self.pid_file.read_text())
        self.pids.add(pid)
        return pid

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """`nuvem up` in the foreground; its output goes to files under the test's folder."""
        index = len(self.processes)
        with (
            (self.root / f"up-{index}.out").open("wb") as out,
            (self.root / f"up-{index}.err").open("wb") as err,
        ):
            process = subprocess.Popen(
                self.command("up", "--port", str(self.port), *args),
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self.processes.append(process)
        return process

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return path

    def admin_password(self) -> str:
        return self.env.get("NUVEM_ADMIN_PASSWORD") or self.password_file.read_text().strip()

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def admin(self) -> httpx.Client:
        return self.client(auth=("admin", self.admin_password()))

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def function(self, name: str) -> dict[str, Any]:
        with self.admin() as admin:
            response = admin.get(f"/system/function/{name}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def wait_ready(self, *names: str, timeout: float = 60.0) -> None:
        for name in names:
            wait_for(
                lambda name=name: self.function(name)["status"] == "ready",
                timeout,
                f"{name} ready",
            )

    def stop(self) -> None:
        """Finaliser: `nuvem down`, then end whatever is still alive."""
        with contextlib.suppress(ValueError, OSError):
            self.pids.add(int(self.pid_file.read_text()))
        if self.healthy():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run("down", check=False, timeout=60)
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for pid in self.pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 15
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def nuvem(tmp_path: Path) -> Iterator[Nuvem]:
    platform = Nuvem(tmp_path)
    try:
        yield platform
    finally:
        platform.stop()


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
    wait_for(
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
    revoked = wait_for(
        lambda: (r := post(nuvem, "echo", b"hi", key)).status_code == 401 and r,
        15,
        "the revoked key to be refused",
    )
    assert "unknown or revoked" in revoked.json()["error"]

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

    nuvem.write(
        "broken.yaml",
        """\
        functions:
          broken:
            handler: functions:Broken
        """,
    )
    failed = nuvem.run("deploy", "-f", "broken.yaml", "--timeout", "60", check=False)
    assert failed.returncode == 8, failed.stderr
    assert "broken cannot start" in failed.stderr
    assert "the model weights are missing" in failed.stderr

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

    wait_for(restored, 60, "echo, hello and other ready again")
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
    wait_for(lambda: nuvem.healthy() or process.poll() is not None, 60, "the gateway")
    assert process.poll() is None, (nuvem.root / "up-0.err").read_text()
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
    wait_for(lambda: nuvem.function("slow")["inflight"] == 1, 10, "the call in flight")
    assert caller.is_alive(), "the call ended before Ctrl-C: it was not in flight"
    process.send_signal(signal.SIGINT)

    caller.join(30)
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert answer.json()["pid"] in workers

    assert process.wait(60) == 0, (nuvem.root / "up-0.err").read_text()
    assert "nuvem stopped" in (nuvem.root / "up-0.err").read_text()
    assert not nuvem.pid_file.exists()
    wait_for(lambda: not any(alive(pid) for pid in workers), 10, "the workers to exit")
    assert not nuvem.healthy()
    assert os.path.exists(nuvem.state_dir / "nuvem.db")
