"""An authenticated TCP connection between the gateway and a replica on a cluster node.

Calls travel on nuvem's framed protocol straight from the gateway to the worker process (a
Ray actor call costs ~0.8 ms; the framed socket ~0.1 ms), so the worker's port must refuse
anyone who does not hold the replica's secret. Before any frame, both ends prove they know
the secret without sending it (HMAC-SHA256 over nonces from both sides, so neither a replay
nor a reflected answer passes):

    node    -> gateway: MAGIC, node nonce (32 bytes)
    gateway -> node:    gateway nonce (32 bytes), HMAC(secret, "gateway" + node + gateway nonce)
    node    -> gateway: HMAC(secret, "node" + gateway nonce + node nonce)

A connection that fails the check is closed and the node keeps listening until its
deadline; the traffic after the handshake is plain TCP (as Ray's own is without TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import socket

from nuvem.errors import Unauthorized, Unavailable

MAGIC = b"NUVEM-LINK-1\n"
NONCE = 32
DIGEST = hashlib.sha256().digest_size
HANDSHAKE_TIMEOUT = 5.0


def _proof(secret: bytes, role: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(secret, role + first + second, hashlib.sha256).digest()


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise ConnectionError("the other end closed the connection during the handshake")
        data += chunk
    return data


def listen(host: str) -> socket.socket:
    """A listening socket on `host` (the node's address) at a free port."""
    listener = socket.create_server((host, 0), backlog=8)
    listener.setblocking(False)
    return listener


async def accept(listener: socket.socket, secret: bytes, wait_s: float) -> socket.socket:
    """The first connection that proves it holds `secret`; others are closed. Unavailable
    when none came within `wait_s` seconds."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(wait_s):
            while True:
                sock, _ = await loop.sock_accept(listener)
                sock.setblocking(False)
                try:
                    async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                        if await _node_side(loop, sock, secret):
                            sock.setblocking(True)
                            return sock
                except (OSError, TimeoutError):
                    pass
                sock.close()
    except TimeoutError:
        raise Unavailable(
            f"no authenticated gateway connected within {wait_s:.0f}s",
            "check that the gateway can reach this node's address (firewall, --node-ip)",
        ) from None


async def _node_side(loop: asyncio.AbstractEventLoop, sock: socket.socket, secret: bytes) -> bool:
    ours = os.urandom(NONCE)
    await loop.sock_sendall(sock, MAGIC + ours)
    answer = await _recv_exactly(loop, sock, NONCE + DIGEST)
    theirs, proof = answer[:NONCE], answer[NONCE:]
    if not hmac.compare_digest(proof, _proof(secret, b"gateway", ours, theirs)):
        return False
    await loop.sock_sendall(sock, _proof(secret, b"node", theirs, ours))
    return True


async def connect(
    host: str, port: int, secret: bytes, wait_s: float = HANDSHAKE_TIMEOUT
) -> socket.socket:
    """A connection to a replica's port, authenticated both ways; ready for frames."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(wait_s):
            await loop.sock_connect(sock, (host, port))
            hello = await _recv_exactly(loop, sock, len(MAGIC) + NONCE)
            if not hello.startswith(MAGIC):
                raise Unauthorized(
                    f"{host}:{port} is not a nuvem replica (it did not greet as one)",
                    "check the node's address; another program may hold the port",
                )
            theirs = hello[len(MAGIC) :]
            ours = os.urandom(NONCE)
            await loop.sock_sendall(sock, ours + _proof(secret, b"gateway", theirs, ours))
            proof = await _recv_exactly(loop, sock, DIGEST)
            if not hmac.compare_digest(proof, _proof(secret, b"node", ours, theirs)):
                raise Unauthorized(
                    f"the replica at {host}:{port} could not prove it holds the replica's secret",
                    "something else answers on the node's port; check the node",
                )
    except TimeoutError:
        sock.close()
        raise Unavailable(
            f"the replica at {host}:{port} did not complete the handshake within {wait_s:.0f}s",
            "check the network between the gateway and the node",
        ) from None
    except ConnectionError as exc:
        sock.close()
        raise Unauthorized(
            f"the replica at {host}:{port} refused the connection: {exc}",
            "the replica's secret may be wrong, or the replica already has its gateway",
        ) from None
    except BaseException:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _keepalive(sock)
    return sock


def _keepalive(sock: socket.socket) -> None:
    """Probe an idle connection so a node cut off the network is noticed even when Ray is
    slower to say so: dead after about 5 s of silence."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    with contextlib.suppress(AttributeError, OSError):  # Linux names; elsewhere the defaults
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 5000)
