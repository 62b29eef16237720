"""`HttpPool`: kept-alive HTTP/1.1 connections to one address, for one container replica.

A call takes an idle connection (the one freed last) or opens one; there is no limit
beyond the router's max_inflight. A call goes out without a coroutine when a connection is
idle, which under load is always. A connection idle longer than `idle_timeout` is closed
instead of reused (servers close theirs: of-watchdog after its read timeout, 10 s by
default). When a reused connection closes before any byte of the answer came, the server
had most likely closed it while idle: an idempotent method is sent once more on a new one.
A pool to a container on a cluster node opens each new connection with the `preamble` its
node's relay asks for (cluster/relay_preamble.py), in the same write as the first request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from nuvem.errors import BadRequest
from nuvem.runtime.http_connection import HttpConnection, HttpFailed, request_head
from nuvem.runtime.replica import CallResult

CONNECT_TIMEOUT = 5.0
IDLE_TIMEOUT = 15.0  # seconds, as aiohttp's default keep-alive
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})  # RFC 9110


class HttpPool:
    def __init__(
        self,
        host: str,
        port: int,
        connect_timeout: float = CONNECT_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        preamble: Callable[[], bytes] | None = None,  # a new connection's first bytes
    ) -> None:
        self.host = host
        self.preamble = preamble
        self.port = port
        self.authority = f"{host}:{port}"
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._idle: list[HttpConnection] = []
        self._open: set[HttpConnection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self.closed = False

    @property
    def connections(self) -> int:
        """Connections open now, idle or busy."""
        return len(self._open)

    def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> asyncio.Future[CallResult]:
        """Send one call; the future has its answer (hop-by-hop headers and the length
        taken out), or raises HttpFailed (or BadRequest for a header that cannot be sent).
        Cancelling the future closes its connection."""
        future: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        if self.closed:
            future.set_exception(HttpFailed("the connection pool is closed"))
            return future
        try:
            head = request_head(method, target, self.authority, headers, len(body))
        except BadRequest as error:
            future.set_exception(error)
            return future
        self._send(method, head, body, future, retry=method in IDEMPOTENT)
        return future

    def _send(
        self, method: str, head: bytes, body: bytes, future: asyncio.Future[CallResult], retry: bool
    ) -> None:
        connection = self._take()
        if connection is None:
            task = asyncio.get_running_loop().create_task(
                self._connect_and_send(method, head, body, future)
            )
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
            future.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
            return
        if not retry or connection.calls == 0:
            connection.send(head, body, future, method == "HEAD")
            return
        # Reused: if it turns out the server had closed it, try once on a new connection.
        attempt: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()
        connection.send(head, body, attempt, method == "HEAD")

        def settle(done: asyncio.Future[CallResult]) -> None:
            if future.done():
                return
            error = done.exception()
            if isinstance(error, HttpFailed) and not error.answered and not self.closed:
                self._send(method, head, body, future, retry=False)
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result())

        attempt.add_done_callback(settle)
        future.add_done_callback(lambda f: attempt.cancel() if f.cancelled() else None)

    def _take(self) -> HttpConnection | None:
        now = self._clock()
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            if now - connection.idle_since > self.idle_timeout:
                connection.abort()
                continue
            return connection
        return None

    def _freed(self, connection: HttpConnection) -> None:
        if self.closed or connection.closed:
            return
        connection.idle_since = self._clock()
        self._idle.append(connection)

    def _lost(self, connection: HttpConnection) -> None:
        self._open.discard(connection)

    async def _connect_and_send(
        self, method: str, head: bytes, body: bytes, future: asyncio.Future[CallResult]
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: HttpConnection(self._freed, self._lost), self.host, self.port
                )
        except (OSError, TimeoutError) as error:
            if not future.done():
                reason = str(error) or f"no connection within {self.connect_timeout:g}s"
                future.set_exception(HttpFailed(f"could not connect: {reason}"))
            return
        self._open.add(connection)
        if future.done() or self.closed:  # given up, or closed, while connecting
            connection.abort()
            if not future.done():
                future.set_exception(HttpFailed("the connection pool is closed"))
            return
        if self.preamble is not None:
            head = self.preamble() + head  # one write, as a call on a reused connection
        connection.send(head, body, future, method == "HEAD")

    async def close(self) -> None:
        """Close every connection; calls on them fail with HttpFailed."""
        self.closed = True
        for task in list(self._connecting):
            task.cancel()
        for connection in list(self._open):
            connection.abort()
        self._idle.clear()
        # Let the transports deliver connection_lost before the loop may end.
        await asyncio.sleep(0)
