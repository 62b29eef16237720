"""`ContainerRelay`: the only way from the network to a container on a cluster node.

The container's port is published on the node's loopback; the relay listens on the node's
address, in the `ContainerActor`'s event loop, and pipes a connection's bytes both ways to
that loopback port once the connection has sent a valid preamble (cluster/relay_preamble.py).
A connection whose first line is not one (or none came within `PREAMBLE_TIMEOUT`, or it is
longer than `MAX_PREAMBLE`) gets a 401 with a JSON error, as an HTTP client expects, and is
closed; nothing of it reaches the container. The first refusal from each address is said in
the replica's log (`nuvem logs FUNCTION`), later ones only counted, so a port scan does not
flood it.

Protocols, not streams: the relay is on every call's path, and a protocol forwards a chunk
in one `write` with no task per connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import cast

from nuvem.cluster.relay_preamble import MAX_PREAMBLE, Nonces, Refused, check_preamble
from nuvem.errors import ClusterError
from nuvem.runtime.replica import CallResult

PREAMBLE_TIMEOUT = 5.0  # seconds a new connection has to send its preamble
CONNECT_TIMEOUT = 5.0
LOGGED_SOURCES = 1024  # addresses whose refusal was logged; beyond, refusals are only counted


REFUSED_HEADER = "x-nuvem-relay-refused"  # on a refusal: the gateway's pool tells it from an answer


def refusal_answer(reason: str) -> bytes:
    """What a refused connection reads before it is closed."""
    body = json.dumps(
        {
            "error": f"nuvem's container relay refused the connection: {reason}; call the "
            "function through the gateway (/function/NAME), which signs its connections"
        }
    ).encode()
    head = (
        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
        f"{REFUSED_HEADER}: {reason}\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def relay_refusal(
    function: str, replica_id: str, node: str, answer: CallResult
) -> ClusterError | None:
    """The error of a call whose connection the node's relay refused (the gateway's own
    preamble: a clock far off, most likely), rather than the function's answer; None for
    an answer of the function."""
    for name, value in answer.headers:
        if name.lower() == REFUSED_HEADER:
            return ClusterError(
                f"function {function!r}: the relay of replica {replica_id} on node {node} "
                f"refused the gateway's connection: {value}",
                "keep the clocks of the gateway's machine and the nodes in sync (NTP); "
                f"`nuvem logs {function}` has the relay's line",
            )
    return None


class _Side(asyncio.Protocol):
    """One end of a relayed connection: what it reads goes to its peer's transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool | None:
        # Half-close: the other end may still be answering (a body read to the close).
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.eof:
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()  # after what is buffered for it is written

    # The peer writes too slowly: stop reading from this side until it catches up.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Inbound(_Side):
    """A connection from the network: its preamble first, then relayed."""

    def __init__(self, relay: ContainerRelay) -> None:
        super().__init__()
        self.relay = relay
        self.buffer = b""
        self.checked = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        wait = self.relay.preamble_timeout
        self._timer = asyncio.get_running_loop().call_later(
            wait, self._refuse, f"no preamble within {wait:g}s"
        )
        self.relay.inbound.add(self)

    def data_received(self, data: bytes) -> None:
        if self.checked:
            if self.peer is None:  # still connecting to the container: keep it for then
                self.buffer += data
            else:
                super().data_received(data)
            return
        self.buffer += data
        end = self.buffer.find(b"\n", 0, MAX_PREAMBLE)
        if end < 0:
            if len(self.buffer) >= MAX_PREAMBLE:
                self._refuse(f"no preamble within the first {MAX_PREAMBLE} bytes")
            return
        line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
        verdict = self.relay.check(line)
        if isinstance(verdict, Refused):
            self._refuse(verdict.reason)
            return
        self.checked = True
        self._cancel_timer()
        assert self.transport is not None
        self.transport.pause_reading()  # until the container's end is there
        task = asyncio.get_running_loop().create_task(self._connect())
        self.relay.tasks.add(task)
        task.add_done_callback(self.relay.tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, outbound = await loop.create_connection(
                    _Side, self.relay.target_host, self.relay.target_port
                )
        except (OSError, TimeoutError):
            if self.transport is not None:
                self.transport.abort()  # the container is gone: the caller sees a dropped call
            return
        assert self.transport is not None
        if self.transport.is_closing():
            if outbound.transport is not None:
                outbound.transport.close()
            return
        outbound.peer, self.peer = self, outbound
        if self.buffer:
            assert outbound.transport is not None
            outbound.transport.write(self.buffer)
            self.buffer = b""
        if self.eof and outbound.transport is not None and outbound.transport.can_write_eof():
            outbound.transport.write_eof()
        self.transport.resume_reading()

    def _refuse(self, reason: str) -> None:
        self._cancel_timer()
        self.relay.refused(self.transport, reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(refusal_answer(reason))
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool | None:
        if not self.checked:
            self._refuse("the connection ended before its preamble")
            return True
        if self.peer is None:  # the container's end is not there yet: pass it on then
            self.eof = True
            return True
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.relay.inbound.discard(self)
        super().connection_lost(exc)


class ContainerRelay:
    """Listens on `host` (the node's address) and relays signed connections for
    `replica` to `target_port` on the node's loopback."""

    def __init__(
        self,
        secret: bytes,
        replica: str,
        target_port: int,
        log: Callable[[str], None],
        target_host: str = "127.0.0.1",
        clock: Callable[[], float] = time.time,
        preamble_timeout: float = PREAMBLE_TIMEOUT,
    ) -> None:
        self.secret = secret
        self.preamble_timeout = preamble_timeout
        self.replica = replica
        self.target_host = target_host
        self.target_port = target_port
        self.refusals = 0
        self._log = log
        self._clock = clock
        self._nonces = Nonces()
        self._logged: set[str] = set()
        self._server: asyncio.Server | None = None
        self.inbound: set[_Inbound] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, host: str, port: int = 0) -> int:
        """Listen on `port` of `host` (0: a free one); the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Inbound(self), host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def check(self, line: bytes) -> Refused | None:
        now_ms = int(self._clock() * 1000)
        verdict = check_preamble(line, self.secret, self.replica, now_ms)
        if isinstance(verdict, Refused):
            return verdict
        return self._nonces.admit(verdict, now_ms)

    def refused(self, transport: asyncio.Transport | None, reason: str) -> None:
        self.refusals += 1
        peer = transport.get_extra_info("peername") if transport is not None else None
        source = str(peer[0]) if isinstance(peer, tuple) and peer else "an unknown address"
        if source in self._logged or len(self._logged) >= LOGGED_SOURCES:
            return
        self._logged.add(source)
        self._log(
            f"relay refused a connection from {source} to port {self.port}: {reason} "
            "(later refusals from this address are counted, not logged)"
        )

    async def close(self) -> None:
        """Stop listening and drop every relayed connection."""
        if self._server is not None:
            self._server.close()
        for inbound in list(self.inbound):
            if inbound.transport is not None:
                inbound.transport.abort()
            if inbound.peer is not None and inbound.peer.transport is not None:
                inbound.peer.transport.abort()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.sleep(0)
