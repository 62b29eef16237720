"""uvicorn's httptools protocol with a deadline on the request line and headers (slowloris).

Neither of uvicorn's HTTP protocols times out a request whose headers arrive a byte at a
time: the ASGI app, and so the Guard's body timeout, is only called once they are complete,
and a connection that never sends anything is never closed. With this protocol a request
has `header_timeout` seconds to finish its headers, counted from the connection's opening
(its first request) or from the first byte of the request (the next ones on a kept-alive
connection); past it the client gets a 408 and the connection is closed, or is closed
without an answer when it never sent a byte.

The hot path pays nothing: no code runs per request. A sweep over the server's
connections, every second (a quarter of the timeout when that is shorter), finds those
waiting for headers and closes the ones it has seen waiting, with no request getting
through, for `header_timeout`. A connection waits for headers when no request is being
answered and uvicorn's keep-alive timer is not running: that timer runs from the end of an
answer until the next byte comes, so once it is off, bytes of a request came whose headers
are not complete (or, on a new connection, none came yet)."""

from __future__ import annotations

import asyncio
import functools
import weakref

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from nuvem.errors import RequestTimeout
from nuvem.gateway.asgi import render_error

# The servers whose connections are being swept: one sweep each, while they have any.
_SWEPT: weakref.WeakSet[ServerState] = weakref.WeakSet()


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """Set `header_timeout` on a subclass (`with_header_timeout`): uvicorn builds protocols
    from the class alone."""

    header_timeout: float = 30.0

    # Since when (loop time) the last sweep has seen this connection waiting for the
    # headers of a request after `_waiting_after` (the answer then last begun, if any).
    _waiting_since: float | None = None
    _waiting_after: RequestResponseCycle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.server_state not in _SWEPT:
            _SWEPT.add(self.server_state)
            # Never early, and at most two intervals late: a second on the default 30 s.
            interval = min(1.0, self.header_timeout / 4)
            self.loop.call_later(interval, _sweep, self.loop, self.server_state, interval)

    def check_headers(self, now: float) -> None:
        """Close the connection if it has waited for a request's headers for too long."""
        answering = self.cycle is not None and not self.cycle.response_complete
        if answering or self.timeout_keep_alive_task is not None or self.transport.is_closing():
            self._waiting_since = None
            return
        if self._waiting_since is None or self._waiting_after is not self.cycle:
            # First seen waiting, or a request got through since: its deadline starts now.
            self._waiting_since, self._waiting_after = now, self.cycle
            return
        if now - self._waiting_since < self.header_timeout:
            return
        if self.scope is not None:  # a request began (the parser made its scope)
            self.transport.write(_late_answer(self.header_timeout))
        self.transport.close()


def _sweep(loop: asyncio.AbstractEventLoop, state: ServerState, interval: float) -> None:
    now = loop.time()
    for connection in list(state.connections):
        if isinstance(connection, HeaderTimeoutProtocol):
            connection.check_headers(now)
    if state.connections:
        loop.call_later(interval, _sweep, loop, state, interval)
    else:
        _SWEPT.discard(state)


@functools.cache
def with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class giving each request's headers `seconds` to arrive (uvicorn.Config's
    `http`). Cached: one class per setting, not one per server."""

    class Timed(HeaderTimeoutProtocol):
        header_timeout = seconds

    return Timed


def _late_answer(seconds: float) -> bytes:
    status, headers, body = render_error(
        RequestTimeout(
            f"the request's headers took more than {seconds:g}s to arrive",
            "send the request line and headers at once, or raise NUVEM_READ_TIMEOUT",
        )
    )
    lines = [b"HTTP/1.1 %d Request Timeout" % status]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"content-length: %d" % len(body), b"connection: close", b"", body]
    return b"\r\n".join(lines)
