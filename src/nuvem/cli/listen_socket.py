"""The gateway's listening socket, bound before anything else starts.

Bound here rather than by uvicorn so that a port in use is a nuvem error said before the
platform touches its state (uvicorn would say it only after startup, in its own words)."""

from __future__ import annotations

import errno
import socket

from nuvem.errors import LifecycleError


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port`, as uvicorn would have made it. It listens only once
    uvicorn serves it: until then a client is refused at once instead of waiting while the
    platform starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restarted gateway may bind while old connections sit in TIME_WAIT.
    # On Linux this still refuses a port another socket listens on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise _refused(host, port, exc) from None
    sock.set_inheritable(False)
    return sock


def check(host: str, port: int) -> None:
    """Fail as `bind` would, without keeping the port (for `nuvem up --detach`)."""
    bind(host, port).close()


def _refused(host: str, port: int, exc: OSError) -> LifecycleError:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return LifecycleError(
            f"port {port} is already in use on {host}",
            "stop what listens there, or start nuvem on another one with --port",
        )
    if exc.errno == errno.EACCES:
        return LifecycleError(
            f"not allowed to listen on {where}",
            "ports below 1024 need privileges; pick another with --port",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return LifecycleError(
            f"cannot listen on {where}: no interface of this machine has that address",
            "use --host 127.0.0.1 or 0.0.0.0",
        )
    return LifecycleError(f"cannot listen on {where}: {exc.strerror or exc}")
