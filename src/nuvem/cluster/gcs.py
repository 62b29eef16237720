"""Talking to a Ray head's GCS with the cluster token, and nothing else of Ray.

Ray takes its token only from the process environment (`RAY_AUTH_MODE=token` and
`RAY_AUTH_TOKEN_PATH`), read once into a process-wide cache; `use_token` is the one place
nuvem sets them, for this process and the Ray clients it makes. A `GcsClient` answers
membership questions in about a millisecond without the cost of a driver (`ray.init`
takes 1.5-2 s and starts a core worker), so nuvem's own calls use it.

Before Ray is asked, `probe` checks the address itself: Ray retries an unreachable head
for 40 s and a refused token for 22 s before it says so; the probe tells in well under a
second which of the three it is (nothing listens, not a Ray head, token refused).
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
from types import ModuleType
from typing import Any

from nuvem.cluster.options import auth_environ
from nuvem.cluster.token import ClusterToken
from nuvem.errors import ClusterError, ClusterTokenError
from nuvem.stack.cluster import split_address

CONNECT_TIMEOUT = 3.0
# The client preface of HTTP/2 (RFC 9113 section 3.4) and an empty SETTINGS frame; a
# gRPC server, as Ray's GCS is, answers with a SETTINGS frame of its own.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS = 0x4

_lock = threading.Lock()
_token_in_use: ClusterToken | None = None


class HeadUnreachable(ClusterError):
    """Nothing answers at the head's address (yet): worth trying again, unlike the rest."""


def ray_module(name: str) -> ModuleType:
    """Import a Ray module, or say how to install Ray."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ClusterError(
            f"Ray is not installed here ({exc.msg}); cluster mode needs it",
            hint="pip install 'nuvem[ray]' in the environment that runs nuvem",
        ) from None


def use_token(token: ClusterToken) -> None:
    """Make this process's Ray clients present `token`.

    A process belongs to one cluster: switching to another token while Ray clients made
    with the first one live would break them, so only the same token may be set again.
    """
    global _token_in_use
    with _lock:
        if _token_in_use is not None:
            if _token_in_use.path != token.path:
                raise ClusterError(
                    f"this process already talks to a cluster with the token at "
                    f"{_token_in_use.path}, not {token.path}",
                    hint="use one token per process",
                )
            return
        raylet = ray_module("ray._raylet")
        os.environ.pop("RAY_AUTH_TOKEN", None)  # a value there would win over the file
        os.environ.update(auth_environ(token.path))
        # Ray caches its configuration and the token: make it read them again.
        raylet.Config.initialize("")
        raylet.AuthenticationTokenLoader.instance().reset_cache()
        _token_in_use = token


def probe(address: str, token: ClusterToken, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A GcsClient of the head at `address` that accepted `token`; a clear error if not."""
    host, port = split_address(address)
    _check_grpc(host, port, timeout)
    use_token(token)
    raylet = ray_module("ray._raylet")
    exceptions = ray_module("ray.exceptions")
    try:
        # Its constructor asks the GCS for the cluster id, so the token is checked here.
        return raylet.GcsClient(address=address)
    except exceptions.AuthenticationError:
        raise ClusterTokenError(
            f"the Ray head at {address} refused the cluster token from {token.path}",
            hint="copy the token again from the head: `nuvem node token` there prints it",
        ) from None
    except exceptions.RpcError as exc:
        raise HeadUnreachable(
            f"the Ray head at {address} did not answer: {exc}",
            hint="check that the head runs and that this address reaches it",
        ) from None


def _check_grpc(host: str, port: int, timeout: float) -> None:
    address = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_H2_PREFACE)
            reply = _read(sock, 9)
    except TimeoutError:
        raise HeadUnreachable(
            f"no answer from {address} within {timeout:g}s",
            hint="check the address, and that a firewall lets this machine reach that port",
        ) from None
    except OSError as exc:
        raise HeadUnreachable(
            f"cannot reach a Ray head at {address}: {exc.strerror or exc}",
            hint="start the head first (`nuvem up` with `cluster: {engine: ray}`), or check "
            "the address and port it printed",
        ) from None
    if len(reply) < 9 or reply[3] != _SETTINGS:
        raise ClusterError(
            f"{address} answers, but it is not a Ray head (it does not speak gRPC)",
            hint="give the head's GCS port (6379 unless `cluster.port` says otherwise), "
            "not the gateway's",
        )


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data
