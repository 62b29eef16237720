"""Binary framing between the gateway and a worker process.

A frame is a 13-byte header (payload length, kind, call id, metadata length), then the
metadata as compact JSON and the body as raw bytes. Bodies are never re-encoded, so a
tensor or an image crosses the process boundary as the bytes the client sent.
Standard library only: this module runs inside every function environment.
"""

from __future__ import annotations

import asyncio
import enum
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

HEADER = struct.Struct("!IBII")
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # built once: this is per call
MAX_FRAME = 1 << 31


class Kind(enum.IntEnum):
    HELLO = 1  # worker -> gateway: handler loaded and set up, ready for calls
    SETUP_FAILED = 2  # worker -> gateway: the handler could not be loaded; the worker exits
    CALL = 3  # gateway -> worker: run the handler on one request
    RESULT = 4  # worker -> gateway: the handler's answer
    ERROR = 5  # worker -> gateway: the handler raised; the worker lives on


@dataclass(slots=True)
class Frame:
    kind: Kind
    call_id: int
    meta: Any
    body: bytes


def encode(kind: Kind, call_id: int, meta: Any, body: bytes = b"") -> bytes:
    meta_bytes = _dumps(meta).encode()
    return (
        HEADER.pack(len(meta_bytes) + len(body), int(kind), call_id, len(meta_bytes))
        + meta_bytes
        + body
    )


def encode_parts(kind: Kind, call_id: int, meta: Any, body: bytes) -> tuple[bytes, bytes]:
    """Header+metadata and body separately, so a large body is written without a copy."""
    meta_bytes = _dumps(meta).encode()
    head = HEADER.pack(len(meta_bytes) + len(body), int(kind), call_id, len(meta_bytes))
    return head + meta_bytes, body


class FrameProtocol(asyncio.Protocol):
    """Frames over a stream socket, without a coroutine per frame.

    Incoming bytes are cut into frames inside `data_received`; outgoing frames written in
    one pass of the event loop leave in one system call. Under load that batches many
    calls per send and receive, which is most of the cost of crossing processes.
    """

    def __init__(
        self,
        on_frame: Callable[[Frame], None],
        on_lost: Callable[[Exception | None], None],
    ) -> None:
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._buffer = bytearray()
        self._outgoing: list[bytes] = []
        self._flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def attach(
        self, on_frame: Callable[[Frame], None], on_lost: Callable[[Exception | None], None]
    ) -> None:
        """Hand the frames that arrive from now on to other callbacks."""
        self._on_frame = on_frame
        self._on_lost = on_lost
        if self.closed:
            on_lost(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        size = HEADER.size
        available = len(buffer)
        while available - offset >= size:
            length, kind, call_id, meta_len = HEADER.unpack_from(buffer, offset)
            end = offset + size + length
            if available < end:
                break
            start = offset + size
            meta = json.loads(buffer[start : start + meta_len]) if meta_len else None
            body = bytes(buffer[start + meta_len : end])
            offset = end
            self._on_frame(Frame(Kind(kind), call_id, meta, body))
        if offset:
            del buffer[:offset]

    def write(self, *parts: bytes) -> None:
        if self.closed:
            return
        self._outgoing.extend(parts)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._outgoing and self.transport is not None and not self.closed:
            outgoing, self._outgoing = self._outgoing, []
            self.transport.writelines(outgoing)

    def close(self) -> None:
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_lost(exc)


@dataclass(slots=True)
class CallMeta:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    # Calls of this function waiting at the gateway when this one was sent: a batching
    # replica waits for more only while some are known to be coming.
    behind: int = 0
    # The replica the call was sent to last, for the gateway's access log; not sent.
    replica: str = ""

    def dump(self) -> list[Any]:
        if self.behind:
            return [self.method, self.path, self.query, self.headers, self.behind]
        return [self.method, self.path, self.query, self.headers]

    @classmethod
    def load(cls, raw: list[Any]) -> CallMeta:
        behind = int(raw[4]) if len(raw) > 4 else 0
        return cls(raw[0], raw[1], raw[2], [(k, v) for k, v in raw[3]], behind)


@dataclass(slots=True)
class ResultMeta:
    status: int
    headers: list[tuple[str, str]]

    def dump(self) -> list[Any]:
        return [self.status, self.headers]

    @classmethod
    def load(cls, raw: list[Any]) -> ResultMeta:
        return cls(int(raw[0]), [(k, v) for k, v in raw[1]])


@dataclass(slots=True)
class ErrorMeta:
    """A handler failure: `kind` is the exception type, `message` what it said."""

    kind: str
    message: str
    traceback: str

    def dump(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message, "traceback": self.traceback}

    @classmethod
    def load(cls, raw: dict[str, str]) -> ErrorMeta:
        return cls(raw["kind"], raw["message"], raw.get("traceback", ""))


@dataclass(slots=True)
class HelloMeta:
    pid: int
    python: str

    def dump(self) -> dict[str, Any]:
        return {"pid": self.pid, "python": self.python}

    @classmethod
    def load(cls, raw: dict[str, Any]) -> HelloMeta:
        return cls(int(raw["pid"]), str(raw["python"]))
