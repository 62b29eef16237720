"""`nuvem up` in the foreground, ordered so that the stack's workers start first.

The state folder's lock and the port come first: a second `nuvem up` on this state folder,
or on a port in use, must fail before it prints, writes an event or touches the pid file.
Then the stack is read and its replicas' workers are pre-started (runtime/local.py
`prestart`), and only then does this process import the gateway (uvicorn, the stores, the
APIs: most of its own start), so a model's worker imports torch meanwhile instead of after.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

from rich.console import Console

from nuvem.cli import listen_socket
from nuvem.cli.context import settings_for
from nuvem.cli.state_lock import StateLock
from nuvem.config import Settings
from nuvem.errors import BadRequest
from nuvem.runtime.local import prestart
from nuvem.runtime.warm_pool import WarmPool
from nuvem.stack.loader import load_stack
from nuvem.stack.stack import Stack
from nuvem.stack.units import parse_memory
from nuvem.startup_marks import mark


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches a gateway listening on `host:port` at."""
    if host in ("0.0.0.0", ""):  # every interface: loopback is one of them
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def limits(max_body: str | None, max_connections: int | None) -> dict[str, Any]:
    """`nuvem up`'s limit options, as Settings fields; each one given wins over its NUVEM_*."""
    chosen: dict[str, Any] = {}
    if max_body is not None:
        try:
            chosen["max_body"] = parse_memory(max_body)
        except ValueError as error:
            raise BadRequest(f"--max-body: {error}") from None
    if max_connections is not None:
        chosen["max_connections"] = max_connections
    return chosen


def access_log_choice(value: str | None) -> dict[str, Any]:
    """`--access-log` as a Settings field (it wins over NUVEM_ACCESS_LOG); checked before
    the gateway starts."""
    if value is None:
        return {}
    from nuvem.gateway.access_log import access_format

    return {"access_log": access_format(value).value}


def prestarted(stack: Stack | None, settings: Settings) -> WarmPool:
    """The warm pool, holding an idle worker for each first replica of the stack's
    functions that the pool can stand in for (none on a Ray cluster: replicas start on
    its nodes)."""
    pool = WarmPool(settings.warm_workers)
    if stack is not None and stack.cluster.engine != "ray":
        for spec in stack.functions.values():
            prestart(pool, spec, settings.state_dir / "models")
    return pool


def run(
    file: Path | None,
    host: str,
    port: int,
    state_dir: Path | None,
    chosen: dict[str, Any] | None = None,
    access_log: str | None = None,
) -> None:
    settings = settings_for(state_dir)
    url = client_url(host, port)
    settings = dataclasses.replace(settings, url=url, **(chosen or {}))
    with StateLock(settings.state_dir), contextlib.closing(listen_socket.bind(host, port)) as sock:
        stack = load_stack(file) if file is not None else None
        mark("stack parsed")
        pool = prestarted(stack, settings)
        mark("workers spawned")
        try:
            settings = dataclasses.replace(settings, **access_log_choice(access_log))
            # Imported now, while the pre-started workers import theirs.
            from nuvem.cli import server

            mark("gateway imported")
            server.serve(stack, host, port, sock, settings, pool)
        finally:
            if not pool.closed():  # the gateway never ran to close it
                pool.abandon()
    Console(stderr=True).print("nuvem stopped")
