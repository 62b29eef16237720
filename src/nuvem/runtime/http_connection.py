"""`HttpConnection`: one kept-alive HTTP/1.1 client connection, one call at a time, as an
asyncio protocol; `request_head`, the bytes a request starts with.

The gateway's path to a container replica (runtime/http_pool.py). It does only what that
path needs: a request leaves in one write, and the answer is cut out of the bytes in
`data_received` (status line, headers, then a Content-Length, chunked or read-to-close
body), with no coroutine, stream or header object per call. Measured from one uvloop
process, as the gateway is (bench/http_client.py, docs/containers.md "Performance"):
aiohttp spent 5-7 times the CPU per call on this.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import cast

from nuvem.errors import BadRequest
from nuvem.runtime.replica import CallResult

# Hop-by-hop headers, and the framing the connection sets itself: never passed on, either way.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)
# Not sent on: the gateway has the whole body already, so there is nothing to continue.
_NOT_SENT = HOP_BY_HOP | {"expect"}
MAX_HEAD = 64 * 1024  # bytes of status line and headers an answer may have


class HttpFailed(Exception):
    """The call got no whole answer: the connection failed, closed early or spoke badly."""

    def __init__(self, reason: str, answered: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answered = answered  # some bytes of the answer had come: the call reached it


def request_head(
    method: str, target: str, host: str, headers: list[tuple[str, str]], length: int
) -> bytes:
    """Request line and headers, with the body's length; the caller's own Host is kept.
    Raises BadRequest for a header that would split the request."""
    lines = [f"{method} {target} HTTP/1.1\r\n"]
    hosted = False
    for name, value in headers:
        lowered = name.lower()
        if lowered in _NOT_SENT:
            continue
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            # The gateway's own parser refuses these; a header from elsewhere (a stored
            # job) must not split the request either.
            raise BadRequest(
                f"header {name!r} has a line break in its name or value",
                "send each header on one line",
            )
        hosted = hosted or lowered == "host"
        lines.append(f"{name}: {value}\r\n")
    if not hosted:
        lines.append(f"host: {host}\r\n")
    lines.append(f"content-length: {length}\r\n\r\n")
    text = "".join(lines)
    try:
        return text.encode("latin-1")  # what the gateway decoded them from
    except UnicodeEncodeError:
        return text.encode()


class _Reading(enum.Enum):
    IDLE = "no call on the connection"
    HEAD = "waiting for the status line and headers"
    LENGTH = "reading a body of known length"
    CHUNKED = "reading a chunked body"
    TO_CLOSE = "reading a body that ends when the connection closes"


class HttpConnection(asyncio.Protocol):
    """One connection; `send` starts a call, `on_free` hears when the next one may go and
    `on_lost` when the connection has ended."""

    def __init__(
        self,
        on_free: Callable[[HttpConnection], None],
        on_lost: Callable[[HttpConnection], None],
    ) -> None:
        self._on_free = on_free
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.calls = 0  # calls started on it: more than one means it was reused
        self.idle_since = 0.0
        self._reading = _Reading.IDLE
        self._future: asyncio.Future[CallResult] | None = None
        self._head_only = False
        self._buffer = bytearray()
        self._got_bytes = False
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._keep_alive = True
        self._need = 0  # LENGTH: the body's bytes; CHUNKED: where the current part ends
        self._body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    @property
    def busy(self) -> bool:
        return self._future is not None

    def send(
        self, head: bytes, body: bytes, future: asyncio.Future[CallResult], head_only: bool
    ) -> None:
        """Write one request; `future` gets its answer, or HttpFailed."""
        assert self.transport is not None
        assert self._future is None
        self.calls += 1
        self._future = future
        self._head_only = head_only
        self._reading = _Reading.HEAD
        self._got_bytes = False
        # One system call per small request; a large body goes on without being copied.
        if len(body) < 65536:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        future.add_done_callback(self._given_up)

    def _given_up(self, future: asyncio.Future[CallResult]) -> None:
        # The caller stopped waiting (its deadline): the answer would come later, on a
        # connection the next call needs clean, so the connection goes.
        if future.cancelled() and self._future is future:
            self._future = None
            self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._future is None:
            # Bytes no call asked for: the connection is out of step; not reused.
            self.abort()
            return
        self._got_bytes = True
        self._buffer += data
        try:
            self._parse()
        except HttpFailed as error:
            self._fail(error)
            self.abort()

    def _parse(self) -> None:
        buffer = self._buffer
        while True:
            reading = self._reading
            if reading is _Reading.IDLE:
                return
            if reading is _Reading.HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise HttpFailed(f"answer's headers are over {MAX_HEAD} bytes", True)
                    return
                head = bytes(buffer[:end]).decode("latin-1")
                del buffer[: end + 4]
                self._read_head(head)
            elif reading is _Reading.LENGTH:
                if len(buffer) < self._need:
                    return
                body = bytes(buffer[: self._need])
                del buffer[: self._need]
                self._done(body)
                return
            elif reading is _Reading.CHUNKED:
                if not self._read_chunks():
                    return
            else:  # TO_CLOSE: connection_lost ends it
                self._body += buffer
                buffer.clear()
                return

    def _read_head(self, head: str) -> None:
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
            raise HttpFailed(f"answer's status line is not HTTP/1.x: {lines[0][:80]!r}", True)
        status = int(code)
        if 100 <= status < 200 and status != 101:
            return  # informational (100 Continue, 103 Early Hints): the answer follows
        if status == 101:
            raise HttpFailed("the container switched protocols (101), which calls cannot", True)
        headers: list[tuple[str, str]] = []
        length: str | None = None
        chunked = False
        connection = ""
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise HttpFailed(f"answer has a header line without a colon: {line[:80]!r}", True)
            name = name.strip().lower()
            value = value.strip()
            if name in HOP_BY_HOP:
                if name == "content-length":
                    length = value
                elif name == "transfer-encoding":
                    chunked = value.lower().endswith("chunked")
                elif name == "connection":
                    connection = value.lower()
                continue
            headers.append((name, value))
        self._status = status
        self._headers = headers
        if version == "HTTP/1.0":
            self._keep_alive = "keep-alive" in connection
        else:
            self._keep_alive = "close" not in connection
        if self._head_only or status in (204, 304):
            self._done(b"")
        elif chunked:
            self._reading = _Reading.CHUNKED
            self._need = -1  # at a chunk's size line
        elif length is not None:
            if not length.isdigit():
                raise HttpFailed(f"answer's content-length is not a number: {length!r}", True)
            self._need = int(length)
            self._reading = _Reading.LENGTH
        else:
            self._keep_alive = False
            self._reading = _Reading.TO_CLOSE

    def _read_chunks(self) -> bool:
        """True once the last chunk and its trailers are in."""
        buffer = self._buffer
        while True:
            if self._need < 0:  # a size line, or the trailers after the last chunk
                end = buffer.find(b"\r\n")
                if end < 0:
                    return False
                if self._need == -2:  # trailers: dropped, up to the empty line
                    del buffer[: end + 2]
                    if end == 0:
                        self._done(bytes(self._body))
                        return True
                    continue
                size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HttpFailed(
                        f"answer's chunk size is not hex: {size_text!r}", True
                    ) from None
                self._need = size if size else -2
                continue
            if len(buffer) < self._need + 2:
                return False
            if buffer[self._need : self._need + 2] != b"\r\n":
                raise HttpFailed("answer's chunk is longer than its size says", True)
            self._body += buffer[: self._need]
            del buffer[: self._need + 2]
            self._need = -1

    def _done(self, body: bytes) -> None:
        future = self._future
        self._future = None
        self._reading = _Reading.IDLE
        self._body = bytearray()
        result = CallResult(self._status, self._headers, body)
        if self._buffer or not self._keep_alive:
            self.abort()  # closing, or bytes past the answer: the connection is done
        else:
            self._on_free(self)
        if future is not None and not future.done():
            future.set_result(result)

    def _fail(self, error: HttpFailed) -> None:
        future = self._future
        self._future = None
        if future is not None and not future.done():
            future.set_exception(error)

    def eof_received(self) -> bool | None:
        return False  # the transport closes itself; connection_lost tells the call

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_lost(self)
        if self._future is None:
            return
        if self._reading is _Reading.TO_CLOSE:
            self._body += self._buffer
            self._buffer.clear()
            self._done(bytes(self._body))
            return
        what = f": {exc}" if exc else ""
        self._fail(HttpFailed(f"connection closed before the answer{what}", self._got_bytes))
