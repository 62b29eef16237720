"""A pre-started worker: it imports what every worker needs, then waits to become one.

Run as `python -m nuvem.runtime.pool_worker --control N` by the warm pool. When a replica is
wanted, the gateway sends over the control socket the worker's arguments, its environment
and folder, and (as SCM_RIGHTS) the worker's end of the replica's socketpair. This process
then applies them and runs `nuvem.runtime.worker` exactly as a freshly spawned one would,
minus the interpreter start and the imports (most of a cold start for a Python function).
Standard library only, like the worker.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import socket
import struct
import sys

from nuvem.startup_marks import mark

if __name__ == "__main__":  # not when the gateway imports this module for HEADER
    mark("worker: interpreter up")
from nuvem.runtime import worker  # the import this process exists to do ahead of time

with contextlib.suppress(ImportError):  # the worker's event loop, when the environment has it
    import uvloop  # noqa: F401

HEADER = struct.Struct(">I")
FIRST_READ = 65536


def _receive(control: socket.socket) -> tuple[dict[str, object], int] | None:
    """The order and the replica's socket; None when the pool closed the control socket."""
    data, fds, _, _ = socket.recv_fds(control, FIRST_READ, 1)
    if not data or not fds:
        return None
    (size,) = HEADER.unpack_from(data)
    body = data[HEADER.size :]
    while len(body) < size:
        more = control.recv(size - len(body))
        if not more:
            return None
        body += more
    order: dict[str, object] = json.loads(body)
    return order, fds[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nuvem-pool-worker")
    parser.add_argument("--control", type=int, required=True)
    parser.add_argument("--preload", action="append", default=[], help="module to import now")
    args = parser.parse_args(argv)
    mark("worker: imports done")
    for module in args.preload:
        # Platform code only (a model handler: torch and friends). A failure here is the
        # handler's to report when it loads for real, with its traceback in the logs.
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    mark("worker: handler module imported")
    control = socket.socket(fileno=args.control)
    received = _receive(control)
    control.close()
    if received is None:
        os._exit(0)  # the pool was closed before it needed this worker
    order, fd = received
    mark("worker: order received")
    environ = order["environ"]
    assert isinstance(environ, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in environ.items()})
    cwd = str(order["cwd"])
    os.chdir(cwd)
    # `python -m` put the pool's folder first on sys.path; a spawned worker has its own.
    if sys.path and sys.path[0] == order.get("pool_cwd"):
        sys.path[0] = cwd
    worker_args = [str(a) for a in order["argv"]]  # type: ignore[attr-defined]
    worker_args[worker_args.index("--fd") + 1] = str(fd)
    worker.main(worker_args)


if __name__ == "__main__":
    main()
