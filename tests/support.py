"""The test harness: every helper tests share (importable as `support`: tests/ is on pytest's
pythonpath). Test modules import this, pytest plugins (`servers`) and handler files, never
each other.

- waiting: `wait_until` (on an event loop) and `block_until` (where none runs), both on one
  deadline; tests never sleep to wait for something.
- ports and processes: `free_port`, `stop_process`, `end_pid`, `worker_pids`, `kill_workers`,
  `app_folder`, `die_with_parent` (so a killed test run leaves no server behind).
- in-process servers: `serve_asgi` (uvicorn on a free port) under `serving` (a real gateway
  with real workers: `Running`) and `callback_receiver`; `file_server` for blocking clients.
- `Nuvem`: the installed `nuvem` command, `nuvem up` in a process of its own included.
- fakes: `FakeClock`; for the control loop `echo_runtime`, `PlatformEnvironments`
  (`PLATFORM_PYTHON`), `spec`, `settle`.
- model material made on the spot: `weights_file`, `reference_model`, `jpeg`, `triton_call`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import functools
import http.server
import inspect
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from nuvem.config import Settings
from nuvem.control.controller import Controller
from nuvem.control.deployment import Deployment
from nuvem.gateway.app import create_app
from nuvem.gateway.guard import server_options
from nuvem.platform import Platform
from nuvem.runtime.by_kind import ByKind
from nuvem.runtime.environment import Environment
from nuvem.runtime.fake import FakeRuntime
from nuvem.runtime.local import LocalRuntime
from nuvem.runtime.process_stats import alive
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack_text
from nuvem.stack.stack import Stack

if TYPE_CHECKING:
    import torch
    import tritonclient.http as triton

ADMIN_PASSWORD = "test-admin-password"
HANDLERS = Path(__file__).parent / "handlers"
PLATFORM_PYTHON = Environment(key=None, python=Path(sys.executable), path=None)
POLL_SECONDS = 0.02
T = TypeVar("T")


# -- waiting -------------------------------------------------------------------------------


class _Deadline:
    def __init__(self, within: float, what: str | Callable[[], str]) -> None:
        self.within = within
        self.what = what
        self.end = time.monotonic() + within

    def check(self) -> None:
        """Fail the test once the deadline has passed; `what` is asked only then."""
        if time.monotonic() > self.end:
            said = self.what if isinstance(self.what, str) else self.what()
            raise AssertionError(f"timed out after {self.within}s waiting for {said}")


@overload
async def wait_until(
    condition: Callable[[], Awaitable[T]],
    within: float = 10.0,
    what: str | Callable[[], str] = "condition",
) -> T: ...


@overload
async def wait_until(
    condition: Callable[[], T], within: float = 10.0, what: str | Callable[[], str] = "condition"
) -> T: ...


async def wait_until(
    condition: Callable[[], object],
    within: float = 10.0,
    what: str | Callable[[], str] = "condition",
) -> object:
    """Poll `condition` (a function or a coroutine function) until it returns something
    truthy, and return that; fail the test after `within` seconds. `what` (or what it
    returns, asked only then) says in the failure what was awaited."""
    deadline = _Deadline(within, what)
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        deadline.check()
        await asyncio.sleep(POLL_SECONDS)


def block_until(
    condition: Callable[[], T], within: float = 10.0, what: str | Callable[[], str] = "condition"
) -> T:
    """`wait_until` for code with no event loop: fixtures that start server processes, and
    tests that drive the CLI, which blocks anyway."""
    deadline = _Deadline(within, what)
    while True:
        value = condition()
        if value:
            return value
        deadline.check()
        time.sleep(POLL_SECONDS)


# -- ports and processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """`preexec_fn` for a server a test starts: the kernel sends it SIGTERM when this test
    process dies, even by SIGKILL or an interrupt no finaliser outlives. Without it an
    interrupted run leaves `nuvem up` (its own session) and its workers running with PPid 1.
    The signal follows the thread that started the child: start servers from the main
    thread or a thread that outlives them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def stop_process(
    process: subprocess.Popen[bytes], signal_number: int = signal.SIGTERM, within: float = 15.0
) -> int:
    """Signal `process` unless it has ended, wait `within` seconds, then SIGKILL it; its
    exit code."""
    if process.poll() is None:
        process.send_signal(signal_number)
        try:
            process.wait(within)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def end_pid(pid: int, signal_number: int = signal.SIGTERM, within: float = 15.0) -> None:
    """`stop_process` for a process this one did not start (so cannot wait for)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal_number)
    with contextlib.suppress(AssertionError):
        block_until(lambda: not alive(pid), within, f"pid {pid} to exit")
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


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
        elif b"nuvem.runtime.pool_worker" in cmdline and _serves_from(entry, root):
            found.append(int(entry.name))  # a pre-started worker that became a replica
    return found


def _serves_from(process: Path, root: Path) -> bool:
    """A pre-started worker moves into its function's folder when it becomes a replica."""
    try:
        cwd = (process / "cwd").readlink()
    except OSError:
        return False
    return cwd == root or root in cwd.parents


def kill_workers(root: Path) -> None:
    """SIGKILL the workers a SIGKILLed gateway left behind."""
    for pid in worker_pids(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def app_folder(root: Path, functions: str, stack: str) -> Iterator[Path]:
    """`root` with `functions.py` and `nuvem.yaml` written (dedented); afterwards, any worker
    a SIGKILLed gateway left serving from it is killed."""
    (root / "functions.py").write_text(textwrap.dedent(functions))
    (root / "nuvem.yaml").write_text(textwrap.dedent(stack))
    try:
        yield root
    finally:
        kill_workers(root)


# -- in-process servers --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    lifespan: Literal["on", "off"] = "off",
    shutdown_within: float = 60.0,
    options: Mapping[str, Any] | None = None,
) -> AsyncIterator[str]:
    """Serve the ASGI 3 `app` with uvicorn on a free loopback port of this event loop; yields
    its URL. `options`: more uvicorn.Config settings."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        interface="asgi3",
        **(options or {}),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or task.done(), what="uvicorn started")
    if task.done():
        task.result()  # it failed to start: raise why
        raise AssertionError("uvicorn ended before it started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, shutdown_within)


@dataclass
class Running:
    """A real gateway serving on a loopback socket, real worker processes behind it."""

    platform: Platform
    url: str
    admin: httpx.AsyncClient  # basic auth as admin
    root: Path  # where the stacks it deploys find their handlers

    def client(self, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
        """A client with no credentials, or the `headers` given."""
        return httpx.AsyncClient(base_url=self.url, timeout=30.0, headers=headers)

    async def deploy(
        self, stack_yaml: str, within: float = 60.0, *, started: bool = False
    ) -> list[Deployment]:
        """Deploy a stack written inline (resolved from `root`) and wait until each function
        has its replicas ready or has given up with an error (with `started`: fail the test
        then); returns the deployments."""
        stack = load_stack_text(textwrap.dedent(stack_yaml), "nuvem.yaml", self.root)
        deployments = [self.platform.controller.deploy(s) for s in stack.functions.values()]
        for deployment in deployments:
            await wait_until(
                functools.partial(_settled, deployment),
                within,
                what=f"{deployment.name} ready",
            )
            if started:
                assert deployment.last_error is None, deployment.last_error
        return deployments

    async def invoke(
        self, name: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        return await self.admin.post(f"/function/{name}", content=body, headers=headers)

    async def api_key(self, *functions: str) -> str:
        """A new API key that may invoke `functions`."""
        response = await self.admin.post(
            "/system/keys", json={"name": "test", "functions": list(functions)}
        )
        response.raise_for_status()
        key: str = response.json()["key"]
        return key


def _settled(deployment: Deployment) -> bool:
    return len(deployment.ready()) >= deployment.desired or deployment.last_error is not None


@contextlib.asynccontextmanager
async def serving(
    root: Path,
    state_dir: Path,
    client_timeout: float = 30.0,
    stack: Stack | None = None,
    *,
    open_metrics: bool = True,
    **limits: Any,
) -> AsyncIterator[Running]:
    """A real gateway on a free loopback port, its state in `state_dir`, handlers in `root`
    (and the `stack` it starts with, if one is given); `limits`: Settings fields to change,
    served with the same uvicorn options as `nuvem up`."""
    settings = Settings(
        state_dir=state_dir,
        admin_password=ADMIN_PASSWORD,
        url="http://127.0.0.1",
        open_metrics=open_metrics,
        **limits,
    )
    platform = Platform.create(settings, stack=stack, tick_interval=0.2)
    async with (
        serve_asgi(create_app(platform), lifespan="on", options=server_options(settings)) as url,
        httpx.AsyncClient(
            base_url=url, auth=("admin", ADMIN_PASSWORD), timeout=client_timeout
        ) as admin,
    ):
        yield Running(platform, url, admin, root)


async def asgi_body(receive: Receive) -> bytes:
    """The whole request body an ASGI app is sent."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


@dataclass
class Callback:
    path: str
    headers: dict[str, str]
    body: bytes
    query: str = ""


@dataclass
class Receiver:
    """A real HTTP server that records the callbacks it receives."""

    url: str = ""
    received: list[Callback] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with 503 before accepting

    def by_call_id(self) -> dict[str, Callback]:
        return {c.headers["x-call-id"]: c for c in self.received}

    async def app(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if scope["type"] != "http":
            return
        body = await asgi_body(receive)
        status = 204
        if self.fail_next > 0:
            self.fail_next -= 1
            status = 503
        else:
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            query = scope["query_string"].decode()
            self.received.append(Callback(scope["path"], headers, body, query))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def callback_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with serve_asgi(receiver.app, shutdown_within=10.0) as url:
        receiver.url = url
        yield receiver


@dataclass
class FileServer:
    """Files by path, served from a thread (for clients that block); counts the requests."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)


@contextlib.contextmanager
def file_server() -> Iterator[FileServer]:
    state = FileServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests[self.path] += 1
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output clean

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll keeps shutdown() from waiting half a second per test.
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


# -- nuvem in processes of its own ---------------------------------------------------------


class Nuvem:
    """The installed `nuvem` command against one state folder and one port: its commands,
    and `nuvem up` detached (`up`) or in a process of its own (`start`)."""

    def __init__(
        self, root: Path, env: Mapping[str, str] | None = None, state: str = "state"
    ) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = root / state
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NUVEM_")}
        self.env.update(
            NUVEM_URL=self.url,
            NUVEM_ADMIN_PASSWORD=ADMIN_PASSWORD,
            NUVEM_STATE_DIR=str(self.state_dir),
            # Rich wraps stderr at 80 columns when it is not a terminal; error messages
            # naming long tmp paths must stay on one line for the assertions.
            COLUMNS="1000",
        )
        self.env.update(env or {})
        self.pids: set[int] = set()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._poller: httpx.Client | None = None

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "nuvem.pid"

    @property
    def password_file(self) -> Path:
        return self.state_dir / "admin-password"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The `nuvem up` started last."""
        assert self.processes, "no `nuvem up` started"
        return self.processes[-1]

    def write(self, name: str, text: str) -> Path:
        """A file under `root` (a stack, handlers), its text dedented."""
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return path

    def command(self, *args: str) -> list[str]:
        script = Path(sys.executable).with_name("nuvem")
        if script.exists():
            return [str(script), *args]
        return [sys.executable, "-m", "nuvem.cli.main", *args]

    def run(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """`nuvem ARGS...`; with `check`, fails the test unless it exits 0."""
        result = subprocess.run(
            self.command(*args),
            cwd=self.root,
            env={**self.env, **(env or {})},
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
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

    @contextlib.contextmanager
    def follow(self, *args: str) -> Iterator[list[str]]:
        """`nuvem ARGS...` left running (e.g. `logs -f`): yields its stdout lines as they come,
        and stops it when the block ends."""
        lines: list[str] = []
        with subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as process:
            assert process.stdout is not None
            stream = process.stdout
            reader = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")))
            reader.start()
            try:
                yield lines
            finally:
                process.terminate()
                reader.join(10)
        assert process.returncode is not None  # it did stop

    def up(self, *args: str) -> int:
        """`nuvem up --detach`; returns the pid of the platform it started."""
        self.run("up", "--port", str(self.port), "--detach", *args)
        pid = int(self.pid_file.read_text())
        self.pids.add(pid)
        return pid

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """`nuvem up` in a process of its own; its output goes to `log()`."""
        log = self.root / f"up-{self.port}-{len(self.processes)}.log"
        with log.open("wb") as out:  # the child keeps its own descriptor
            process = subprocess.Popen(
                self.command("up", "--port", str(self.port), *args),
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.processes.append(process)
        self.logs.append(log)
        return process

    def log(self, index: int = -1) -> str:
        """What the `nuvem up` started `index`-th (the last by default) has printed."""
        return self.logs[index].read_text(errors="replace") if self.logs else ""

    def kill(self) -> None:
        """SIGKILL the last `nuvem up` started (its workers live on: see `kill_workers`)."""
        self.process.kill()
        self.process.wait()

    def _get(self, path: str, admin: bool = False, timeout: float = 30.0) -> httpx.Response:
        """A GET on one client kept for polling: a client made per poll costs a TLS context
        each time, CPU the gateway starting next to it would miss."""
        if self._poller is None:
            self._poller = httpx.Client(base_url=self.url)
        auth = ("admin", self.admin_password()) if admin else None
        return self._poller.get(path, auth=auth, timeout=timeout)

    def healthy(self) -> bool:
        try:
            return self._get("/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self, auth: tuple[str, str] | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, auth=auth)

    def admin_password(self) -> str:
        return self.env.get("NUVEM_ADMIN_PASSWORD") or self.password_file.read_text().strip()

    def admin(self) -> httpx.Client:
        return self.client(auth=("admin", self.admin_password()))

    def function(self, name: str) -> dict[str, Any]:
        """`/system/function/NAME`, which must answer 200."""
        response = self._get(f"/system/function/{name}", admin=True)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def has_ready(self, function: str, replicas: int = 1) -> bool:
        """Whether `function` has `replicas` ready; fails the test at once if the `nuvem up`
        started last has exited."""
        if self.processes and self.process.poll() is not None:
            raise AssertionError(f"nuvem up exited:\n{self.log()[-3000:]}")
        try:
            response = self._get(f"/system/function/{function}", admin=True, timeout=5.0)
            available: int = response.json().get("availableReplicas", 0)
        except (httpx.HTTPError, ValueError):
            return False
        return response.status_code == 200 and available >= replicas

    def wait_ready(self, *functions: str, replicas: int = 1, within: float = 60.0) -> None:
        for name in functions:
            block_until(
                functools.partial(self.has_ready, name, replicas),
                within,
                functools.partial(self._not_ready, name),
            )

    async def ready(self, function: str, replicas: int = 1, within: float = 60.0) -> None:
        """`wait_ready` that leaves the event loop running (the check runs in a thread)."""
        await wait_until(
            lambda: asyncio.to_thread(self.has_ready, function, replicas),
            within,
            functools.partial(self._not_ready, function),
        )

    def _not_ready(self, function: str) -> str:
        return f"{function} ready; nuvem up printed:\n{self.log()[-3000:]}"

    def stop(self) -> None:
        """Finaliser: end every `nuvem up` started here, by SIGTERM, then SIGKILL."""
        with contextlib.suppress(ValueError, OSError):
            self.pids.add(int(self.pid_file.read_text()))
        for process in self.processes:
            stop_process(process, signal.SIGTERM, within=40)
        for pid in self.pids:
            if alive(pid):
                end_pid(pid, signal.SIGTERM, within=15)
        if self._poller is not None:
            self._poller.close()


# -- for the control loop, and a clock moved by hand ----------------------------------------


class FakeClock:
    """A clock the test moves by hand (`clock.now = ...`, `clock.advance(seconds)`)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += seconds


def local_runtime(platform: Platform) -> LocalRuntime:
    """The runtime of the platform's process replicas (image functions have their own)."""
    runtime = platform.controller.runtime
    assert isinstance(runtime, ByKind)
    assert isinstance(runtime.processes, LocalRuntime)
    return runtime.processes


def echo_runtime() -> FakeRuntime:
    """In-process replicas that echo the body (the specs here name no real handler)."""
    return FakeRuntime(handler=lambda request: request.body)


class PlatformEnvironments:
    """Every function runs on this Python: no environments are built."""

    async def ensure(self, spec: FunctionSpec) -> Environment:
        return PLATFORM_PYTHON


def spec(**overrides: Any) -> FunctionSpec:
    """A function `f` for the control-loop fakes (nothing is imported)."""
    return FunctionSpec.model_validate({"name": "f", "handler": "m:f", "root": "/", **overrides})


async def settle(controller: Controller) -> None:
    """Let spawned start/stop tasks run to completion, and the exit watchers they woke."""
    await controller.settle()
    for _ in range(3):
        await asyncio.sleep(0)


# -- model material ------------------------------------------------------------------------
# Made on the spot, nothing downloaded: weights are a freshly initialised model saved to a
# temporary folder (once per test session, architecture and seed), images drawn with Pillow.
# torch, numpy and Pillow load only when a test asks for them.


@functools.cache
def _models_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="nuvem-test-models-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def weights_file(arch: str = "resnet18", seed: int = 0) -> Path:
    """A weights file of `arch`, randomly initialised from `seed`."""
    import torch

    from nuvem.models import architectures, weights

    torch.manual_seed(seed)
    model = architectures.build(arch)
    # Random BatchNorm statistics make the logits of different images differ clearly.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_var is not None
            assert module.running_mean is not None
            torch.nn.init.uniform_(module.running_var, 0.5, 1.5)
            torch.nn.init.normal_(module.running_mean, 0.0, 0.1)
    return weights.save_weights(model, _models_folder() / f"{arch}-seed{seed}.safetensors")


def reference_model(arch: str = "resnet18", seed: int = 0) -> torch.nn.Module:
    """The same model as `weights_file(arch, seed)`, in this process, for expected outputs."""
    from nuvem.models import architectures, weights

    return weights.load_weights(architectures.build(arch), weights_file(arch, seed)).eval()


def jpeg(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    """A small JPEG with smooth random colours (random noise would compress badly)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 256, size=(2, 2, 3)).astype(np.float32)
    ys = np.linspace(0, 1, height)[:, None, None]
    xs = np.linspace(0, 1, width)[None, :, None]
    top = corners[0, 0] * (1 - xs) + corners[0, 1] * xs
    bottom = corners[1, 0] * (1 - xs) + corners[1, 1] * xs
    pixels = (top * (1 - ys) + bottom * ys).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def triton_call(url: str, call: Callable[[triton.InferenceServerClient], T]) -> T:
    """Run a tritonclient call against the gateway at `url` in a thread: it blocks, and the
    gateway shares this loop. The client is made in that thread too, since its connections
    belong to one."""
    import tritonclient.http as triton

    def run() -> T:
        client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=120)
        try:
            return call(client)
        finally:
            client.close()

    return await asyncio.to_thread(run)
