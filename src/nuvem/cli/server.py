"""`nuvem up` and `nuvem down`: run the gateway in this process or in the background."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn
import uvloop
from rich.console import Console

from nuvem.cli import listen_socket
from nuvem.cli.context import settings_for
from nuvem.cli.environment_progress import rich_progress
from nuvem.cli.launch import client_url
from nuvem.cli.state_lock import (
    GatewayRecord,
    NotRunning,
    StateLock,
    read_record,
    write_record,
)
from nuvem.cluster.engine_label import engine_label
from nuvem.cluster.head import running_head
from nuvem.cluster.options import HeadOptions, plan
from nuvem.config import DEFAULT_URL, Settings
from nuvem.errors import LifecycleError
from nuvem.gateway.app import Gateway
from nuvem.gateway.guard import Guard, server_options
from nuvem.gateway.line_sinks import StreamSink
from nuvem.platform import Platform
from nuvem.runtime.engine_choice import engine_setting
from nuvem.runtime.environment import Phase, ProgressEvent
from nuvem.runtime.process_stats import alive
from nuvem.runtime.warm_pool import WarmPool
from nuvem.stack.stack import Stack
from nuvem.startup_marks import mark

err = Console(stderr=True)
PID_FILE = "nuvem.pid"
LOG_FILE = "nuvem.log"
GRACEFUL_SECONDS = 30
FORCE_AFTER = 1.0  # seconds from a second Ctrl-C to cutting connections still open


class _Server(uvicorn.Server):
    """The first Ctrl-C (or SIGTERM) drains: calls in flight finish, then replicas stop.
    A second one stops at once: calls still running are answered 503 and every replica
    is killed, so no worker outlives the gateway. Live log and dashboard streams end on
    the first, so they do not hold the drain open."""

    platform: Platform | None = None
    gateway: Gateway | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _freezing: asyncio.Future[None] | None = None
    _signals = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        mark("gateway listening")
        # Everything loaded by now lives as long as the gateway: keep it out of the cyclic
        # collector's scans, which otherwise showed up as 50 ms pauses at p99 under load.
        gc.freeze()
        if self.gateway is not None:  # and again once its API part has loaded beside it
            self._freezing = asyncio.ensure_future(self._freeze_when_loaded(self.gateway))

    @staticmethod
    async def _freeze_when_loaded(gateway: Gateway) -> None:
        with contextlib.suppress(Exception):  # a failed load is the lifespan's to report
            await gateway.loaded()
            gc.freeze()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            if self.platform is not None:
                self.platform.logbook.close()
            if self.gateway is not None:
                self.gateway.close_streams()
            err.print(
                f"draining: calls in flight finish (up to {GRACEFUL_SECONDS}s), then replicas "
                "stop; press Ctrl-C again to stop at once",
                highlight=False,
            )
            super().handle_exit(sig, frame)
            return
        if self._signals == 2 and self.platform is not None and self._loop is not None:
            err.print("stopping at once: calls still running get 503", highlight=False)
            # A signal handler runs between two bytecodes of whatever the loop was doing:
            # hand the work to the loop rather than touch its state from here.
            self._loop.call_soon_threadsafe(
                self.platform.abort, "nuvem is stopping at once (its operator pressed Ctrl-C twice)"
            )
            # uvicorn's force_exit only once those answers are out: set at once, it ended
            # the loop with the calls' tasks unfinished, which answered them with a
            # text/plain 500 and left the workers running. It still cuts open streams.
            self._loop.call_soon_threadsafe(self._loop.call_later, FORCE_AFTER, self._force)

    def _force(self) -> None:
        self.force_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the Ctrl-C or SIGTERM it stopped on once serving ends, which
        # would turn a completed drain into exit 130 (or death by SIGTERM, pid file left).
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()


def serve(
    stack: Stack | None,
    host: str,
    port: int,
    sock: socket.socket,
    settings: Settings,
    warm_pool: WarmPool | None = None,
) -> None:
    """Serve the gateway on `sock` until stopped; `warm_pool` holds workers pre-started
    for the stack (cli/launch.py)."""
    progress = rich_progress(err)

    def on_progress(event: ProgressEvent) -> None:
        if event.phase is not Phase.CACHED:  # every replica start would say it otherwise
            progress(event)

    write_record(settings.state_dir, GatewayRecord(url=settings.url, pid=os.getpid()))
    platform = Platform.create(settings, stack=stack, on_progress=on_progress, warm_pool=warm_pool)
    mark("platform created")
    # The access log's lines on stderr as they are, whatever --log-level says (asking for
    # the log is asking for every line of it), a batch a write.
    gateway = Gateway(platform, access_sink=StreamSink(sys.stderr))
    config = uvicorn.Config(
        Guard(gateway, settings),
        host=host,
        port=port,
        loop="uvloop",
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # no trusted proxy is assumed in front of the gateway
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        **server_options(settings),
    )
    server = _Server(config)
    server.platform = platform
    server.gateway = gateway

    def stop() -> None:
        platform.logbook.close()
        gateway.close_streams()
        server.should_exit = True

    platform.on_shutdown_request = stop
    pid_file = settings.state_dir / PID_FILE
    pid_file.write_text(str(os.getpid()))
    where = (
        f"in {platform.admin_password_file}"
        if platform.admin_password_file
        else "as set in NUVEM_ADMIN_PASSWORD when the state was created"
    )
    err.print(f"[bold]nuvem[/bold] gateway on [cyan]http://{host}:{port}[/cyan]", highlight=False)
    err.print(f"  dashboard: [cyan]{settings.url}/ui[/cyan]", highlight=False)
    err.print(f"  admin user: admin, password {where}", highlight=False)
    err.print(f"  state: {settings.state_dir}", highlight=False)
    # The stack's Ray head (cluster.engine: ray) lives as long as the gateway serves.
    cluster = plan(stack.cluster, settings.state_dir) if stack is not None else None
    if isinstance(cluster, HeadOptions) and stack is not None:
        # The head is a node too: it says whether it runs containers, as a joined one does.
        choice = engine_setting(settings.container_engine, stack.container_engine)
        labels = engine_label(dict(cluster.offer.labels), choice)
        cluster = dataclasses.replace(
            cluster, offer=dataclasses.replace(cluster.offer, labels=labels)
        )
    try:
        with running_head(
            cluster, settings.state_dir, say=lambda line: err.print(line, highlight=False)
        ):
            uvloop.run(server.serve(sockets=[sock]))
    finally:
        pid_file.unlink(missing_ok=True)


def detach(
    argv: list[str], file: Path | None, host: str, port: int, state_dir: Path | None
) -> None:
    settings = settings_for(state_dir)
    # Said here, not as the last lines of the child's log.
    StateLock(settings.state_dir).check()
    listen_socket.check(host, port)
    args = [a for a in argv if a != "--detach"]
    log_path = settings.state_dir / LOG_FILE
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "nuvem.cli.main", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    from nuvem.cli.client import Client  # the HTTP client: not on the gateway's own start

    url = client_url(host, port)
    client = Client(dataclasses.replace(settings, url=url))
    deadline = time.monotonic() + 120
    with err.status(f"starting nuvem on {url}"):
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise LifecycleError(
                    f"nuvem exited with code {process.returncode} while starting:\n"
                    + "\n".join(tail)
                )
            if client.healthy():
                break
            time.sleep(0.1)
        else:
            raise LifecycleError(f"nuvem did not answer on {url} within 120s; see {log_path}")
    err.print(f"[bold]nuvem[/bold] running on [cyan]{url}[/cyan] (pid {process.pid})")
    err.print(f"  dashboard: [cyan]{url}/ui[/cyan]", highlight=False)
    err.print(f"  logs: {log_path}")
    password_file = settings.state_dir / "admin-password"
    if password_file.exists():
        err.print(f"  admin user: admin, password in {password_file}")
    if url != DEFAULT_URL:
        # Commands given this --state-dir find the gateway by themselves; others need telling.
        err.print(
            f"  to reach it from other shells: export NUVEM_URL={url}\n"
            f"  (commands given --state-dir {settings.state_dir} find it by themselves)",
            highlight=False,
            soft_wrap=True,
        )


def shutdown(state_dir: Path | None) -> None:
    """Ask the platform to stop; wait for its process to end when it runs on this machine."""
    from nuvem.cli.client import Client

    settings = settings_for(state_dir)
    pid: int | None = None
    if not settings.url_chosen:
        # The recorded URL may now belong to another state folder's gateway: only the
        # gateway holding this folder's lock is this folder's, and it wrote the record.
        if not StateLock(settings.state_dir).held():
            raise NotRunning(
                f"no nuvem gateway is running with the state folder {settings.state_dir}",
                "give the --state-dir it was started with, or --url (NUVEM_URL) to stop "
                "the gateway at that address",
            )
        record = read_record(settings.state_dir)
        pid = record.pid if record is not None else None
    with Client(settings) as client:
        client.call("POST", "/system/shutdown")
        deadline = time.monotonic() + GRACEFUL_SECONDS + 15
        with err.status("draining calls in flight and stopping replicas"):
            while (pid is not None and alive(pid)) or (pid is None and client.healthy()):
                if time.monotonic() > deadline:
                    raise LifecycleError("nuvem did not stop in time")
                time.sleep(0.1)
    err.print("nuvem stopped")
