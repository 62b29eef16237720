"""Pre-started workers, so a new replica skips the interpreter start and the worker's imports.

A cold worker spends most of its start in `python` itself and in importing asyncio, uvloop
and the worker's modules; a Python handler's own import is usually quick. The pool keeps
`size` idle `nuvem.runtime.pool_worker` processes per interpreter, started ahead of time with
the same pipes and session a spawned worker gets. `spawn` is a drop-in for
`asyncio.create_subprocess_exec` of a worker: it hands the order (arguments, environment,
folder, and the worker's socket as SCM_RIGHTS) to an idle process when one matches, and
spawns a fresh one otherwise. Either way the caller gets a `Process` that becomes the same
worker, so everything after the spawn (handshake, logs, drain) is unchanged.

Variables read only while a process starts (PYTHON*, LD_*, ...) or a library loads (OMP_*,
...) cannot be changed afterwards: idle workers are kept per set of those values, and a
function whose own values differ is spawned cold until the pool has one for its set too.

A handler that is platform code (`nuvem.models.handler` for models) has its module
imported by its idle workers too, and torch before it for a model that runs on torch
(model_env.py `preloads`): most of such a replica's start after its weights. User modules
are never imported ahead: their import-time code must see the function's own environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nuvem.runtime.early_process import EarlyProcess
from nuvem.runtime.loader import split_reference
from nuvem.runtime.model_env import preloads
from nuvem.runtime.pool_worker import HEADER
from nuvem.startup_marks import VARIABLE

log = logging.getLogger(__name__)

WORKER_MODULE = "nuvem.runtime.worker"
POOL_MODULE = "nuvem.runtime.pool_worker"
# Read by the interpreter or the dynamic loader at process start only.
STARTUP_PREFIXES = (
    "PYTHON", "LD_", "GLIBC_", "MALLOC_", "LC_", "LANG", "OMP_", "MKL_", "OPENBLAS_",
)  # fmt: skip
PRELOADABLE = "nuvem."  # handler modules an idle worker may import ahead
# Passed to idle workers as well, but harmless to change later. Nothing else is: an idle
# worker must not carry one function's variables (its secrets) into another's process.
CARRIED = ("PATH", "HOME", VARIABLE)
# Where idle workers wait; the order moves them into the function's folder.
POOL_CWD = "/"

# The interpreter, the start-time variables, and the modules imported ahead.
PoolKey = tuple[str, frozenset[tuple[str, str]], tuple[str, ...]]


def startup_environ(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith(STARTUP_PREFIXES)}


def _preload(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    if "--handler" not in argv:
        return ()
    module, _ = split_reference(argv[argv.index("--handler") + 1])
    if not module.startswith(PRELOADABLE) or "/" in module:
        return ()
    return (*preloads(environ), module)


@dataclass(eq=False)
class Idle:
    process: asyncio.subprocess.Process | EarlyProcess
    control: socket.socket


class WarmPool:
    """Idle workers per interpreter and start-time environment. Runs on the gateway's loop."""

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self.hits = 0  # starts served by an idle worker
        self.misses = 0  # starts that spawned a fresh process
        self._idle: dict[PoolKey, list[Idle]] = {}
        self._filling: dict[PoolKey, asyncio.Task[None]] = {}
        self._closed = False

    def closed(self) -> bool:
        return self._closed

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def spawn(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process | EarlyProcess:
        """Start a worker as `asyncio.create_subprocess_exec(*argv, **kwargs)` would."""
        key = self._key(argv, kwargs)
        if key is None or self.size <= 0 or self._closed:
            return await asyncio.create_subprocess_exec(*argv, **kwargs)
        idle = self._pop(key)
        if idle is not None:
            try:
                if isinstance(idle.process, EarlyProcess):
                    await idle.process.attach()
                self._order(idle, argv, kwargs)
            except OSError as exc:  # it died while idle: start the usual way
                log.warning("pre-started worker pid %s is gone (%s)", idle.process.pid, exc)
                await _end(idle.process)
            else:
                self.hits += 1
                return idle.process
        self.misses += 1
        return await asyncio.create_subprocess_exec(*argv, **kwargs)

    def prestart(self, count: int, *argv: str, **kwargs: Any) -> int:
        """Start `count` idle workers for spawns like this one now, before any event loop
        runs: `nuvem up` calls it first thing, so a model's worker imports torch while the
        gateway imports its modules. Returns how many were started."""
        key = self._key(argv, kwargs)
        if key is None or self.size <= 0 or self._closed:
            return 0
        idle = self._idle.setdefault(key, [])
        started = 0
        for _ in range(count):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                pool_argv, options = self._pool_command(key, theirs, kwargs)
                popen = subprocess.Popen(
                    pool_argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    **options,
                )
            except OSError:
                ours.close()
                log.exception("could not pre-start a worker with %s", key[0])
                break
            finally:
                theirs.close()
            idle.append(Idle(EarlyProcess(popen), ours))
            started += 1
        return started

    def replenish(self, *argv: str, **kwargs: Any) -> None:
        """Top the pool up for workers spawned like this, in the background. Called once the
        replica a spawn started is ready, not at the spawn: on a small machine an idle
        worker importing torch beside a starting replica doubled that replica's start."""
        key = self._key(argv, kwargs)
        if key is not None and self.size > 0 and not self._closed:
            self._fill(key, kwargs)

    def _key(self, argv: Sequence[str], kwargs: Mapping[str, Any]) -> PoolKey | None:
        """None when this spawn is not a worker the pool knows how to stand in for."""
        if len(argv) < 3 or tuple(argv[1:3]) != ("-m", WORKER_MODULE) or "--fd" not in argv:
            return None
        pass_fds = kwargs.get("pass_fds", ())
        environ = kwargs.get("env")
        if len(pass_fds) != 1 or environ is None or kwargs.get("start_new_session") is not True:
            return None
        return argv[0], frozenset(startup_environ(environ).items()), _preload(argv, environ)

    def _pop(self, key: PoolKey) -> Idle | None:
        idle = self._idle.get(key, [])
        while idle:
            candidate = idle.pop(0)
            if candidate.process.returncode is None:
                return candidate
            candidate.control.close()
        return None

    def _order(self, idle: Idle, argv: Sequence[str], kwargs: Mapping[str, Any]) -> None:
        order = {
            "argv": list(argv[3:]),
            "environ": dict(kwargs["env"]),
            "cwd": str(kwargs.get("cwd") or os.getcwd()),
            "pool_cwd": POOL_CWD,
        }
        body = json.dumps(order).encode()
        control = idle.control
        try:
            # Blocking and small: the idle worker is parked in recv, its buffer is empty.
            control.setblocking(True)
            fd = int(kwargs["pass_fds"][0])
            first = HEADER.pack(len(body)) + body
            sent = socket.send_fds(control, [first[:65536]], [fd])
            if sent < len(first):
                control.sendall(first[sent:])
        finally:
            control.close()

    def _fill(self, key: PoolKey, kwargs: Mapping[str, Any]) -> None:
        running = self._filling.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(self._top_up(key, kwargs))
        self._filling[key] = task

    async def _top_up(self, key: PoolKey, kwargs: Mapping[str, Any]) -> None:
        idle = self._idle.setdefault(key, [])
        while not self.closed() and len(idle) < self.size:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                pool_argv, options = self._pool_command(key, theirs, kwargs)
                process = await asyncio.create_subprocess_exec(
                    *pool_argv,
                    stdin=kwargs.get("stdin"),
                    stdout=kwargs.get("stdout"),
                    stderr=kwargs.get("stderr"),
                    **options,
                )
            except OSError:
                ours.close()
                log.exception("could not pre-start a worker with %s", key[0])
                return
            except BaseException:  # cancelled by close() while it started
                ours.close()
                raise
            finally:
                theirs.close()
            if self.closed():  # closed while this one started
                ours.close()
                await _end(process)
                return
            idle.append(Idle(process, ours))

    def abandon(self) -> None:
        """End every idle worker without an event loop: for a `nuvem up` that stopped
        before its gateway ran (and closed the pool)."""
        self._closed = True
        idle = [i for group in self._idle.values() for i in group]
        self._idle.clear()
        for worker in idle:
            worker.control.close()
            if isinstance(worker.process, EarlyProcess):
                worker.process.end()
            else:  # its loop is gone: it can only be signalled
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()

    @staticmethod
    def _pool_command(
        key: PoolKey, control: socket.socket, kwargs: Mapping[str, Any]
    ) -> tuple[list[str], dict[str, Any]]:
        """An idle worker's command line and its options but for its pipes."""
        python, startup, preload = key
        argv = [python, "-m", POOL_MODULE, "--control", str(control.fileno())]
        environ = dict(startup)
        environ.update({k: kwargs["env"][k] for k in CARRIED if k in kwargs["env"]})
        options = {
            "pass_fds": (control.fileno(),),
            "env": environ,
            "cwd": POOL_CWD,
            "start_new_session": True,
        }
        return argv + [f"--preload={module}" for module in preload], options

    async def close(self) -> None:
        """End every idle worker; later spawns start cold."""
        self._closed = True
        filling = list(self._filling.values())
        for task in filling:
            task.cancel()
        await asyncio.gather(*filling, return_exceptions=True)
        idle = [i for group in self._idle.values() for i in group]
        self._idle.clear()
        for worker in idle:
            worker.control.close()  # an idle worker exits when its control socket closes
        await asyncio.gather(*(_end(w.process, grace=2.0) for w in idle), return_exceptions=True)


async def _end(process: asyncio.subprocess.Process | EarlyProcess, grace: float = 0.0) -> None:
    if process.returncode is None and grace > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await process.wait()
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await process.wait()
