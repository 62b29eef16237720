"""Clients that misbehave on purpose, over raw sockets, against a real gateway: each limit
answers its 4xx (or closes), and the gateway then still serves a well-behaved client."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis import ConnectionError as RedisConnectionError

from nuvem.config import Settings
from nuvem.errors import Unauthorized
from nuvem.gateway.asgi import Message, Receive, Scope, Send, respond_error
from nuvem.gateway.guard import Guard
from support import ADMIN_PASSWORD, Running, serving

pytestmark = pytest.mark.anyio

STACK = """
functions:
  echo: {handler: 'handlers:echo'}
  small: {handler: 'handlers:echo', max_body: 1Ki}
"""
MAX_CONNECTIONS = 8
LIMITS: dict[str, Any] = {
    "max_headers": 20,
    "max_header_bytes": 4096,
    "max_url": 2048,
    "max_body": 64 * 1024,
    "read_timeout": 1.0,
    "keep_alive": 1.0,
    "max_connections": MAX_CONNECTIONS,
    "unauth_rate": 1.0,
    "unauth_burst": 5,
}
# A slow client sends one header byte per pause, for ten times the read timeout in all.
TRICKLE_PAUSE = 0.1
TRICKLE_BYTES = round(10 * LIMITS["read_timeout"] / TRICKLE_PAUSE)


@pytest.fixture
async def guarded(tmp_path: Path, handlers_dir: Path) -> AsyncIterator[Running]:
    async with serving(handlers_dir, tmp_path / "state", **LIMITS) as running:
        await running.deploy(STACK, started=True)
        yield running


def _connect(url: str, source: str = "127.0.0.1") -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))


def _answer(
    sock: socket.socket, rest: bytearray | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Read one answer (status, headers, body) or raise ConnectionError when closed. Bytes
    read past it (the next pipelined answer) are kept in `rest`, and read from there first."""
    data = bytes(rest or b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if rest is not None:
        rest[:] = body[length:]
    return status, headers, body[:length]


def _raw(url: str, request: bytes, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    with _connect(url, source) as sock:
        sock.sendall(request)
        return _answer(sock)


def _auth() -> bytes:
    import base64

    return b"Authorization: Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode())


def _post(path: str, body: bytes = b"hi", extra: bytes = b"") -> bytes:
    return (
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\n"
        + _auth()
        + b"\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def _still_serves(gateway: Running) -> None:
    response = await gateway.invoke("echo", b"still here")
    assert response.status_code == 200, response.text
    assert response.content == b"still here"


def _error(body: bytes) -> str:
    message: str = json.loads(body)["error"]
    return message


async def test_too_many_headers_431(guarded: Running) -> None:
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(50))
    status, _, body = await asyncio.to_thread(
        _raw, guarded.url, _post("/function/echo", extra=extra)
    )
    assert status == 431
    assert "NUVEM_MAX_HEADERS" in _error(body)
    await _still_serves(guarded)


async def test_huge_header_431(guarded: Running) -> None:
    extra = b"X-Big: " + b"a" * 10_000 + b"\r\n"
    status, _, body = await asyncio.to_thread(
        _raw, guarded.url, _post("/function/echo", extra=extra)
    )
    assert status == 431
    assert "NUVEM_MAX_HEADER_BYTES" in _error(body)
    await _still_serves(guarded)


async def test_long_url_414(guarded: Running) -> None:
    path = "/function/echo?q=" + "a" * 5000
    status, _, body = await asyncio.to_thread(_raw, guarded.url, _post(path))
    assert status == 414
    assert "NUVEM_MAX_URL" in _error(body)
    await _still_serves(guarded)


async def test_body_limit_gateway_default_and_per_function(guarded: Running) -> None:
    response = await guarded.invoke("echo", b"x" * (64 * 1024 + 1))
    assert response.status_code == 413
    assert "NUVEM_MAX_BODY" in response.json()["error"]
    assert (await guarded.invoke("echo", b"x" * 60_000)).status_code == 200
    # The function's own max_body wins over the gateway's default.
    response = await guarded.invoke("small", b"x" * 1025)
    assert response.status_code == 413
    assert "max_body" in response.json()["error"]
    assert (await guarded.invoke("small", b"x" * 1024)).status_code == 200
    await _still_serves(guarded)


async def test_slow_body_is_cut_off(guarded: Running) -> None:
    def trickle() -> int | None:
        with _connect(guarded.url) as sock:
            sock.sendall(_post("/function/echo", b"")[: -len(b"0\r\n\r\n")] + b"100\r\n\r\nab")
            try:
                status, _, _ = _answer(sock)  # nothing more comes: the read timeout ends it
            except (ConnectionError, TimeoutError):
                return None
            return status

    started = time.monotonic()
    status = await asyncio.to_thread(trickle)
    assert status in (408, None)
    assert time.monotonic() - started < 8
    await _still_serves(guarded)


def _trickle(sock: socket.socket, head: bytes, answered_first: int = 0) -> tuple[int, bytes] | None:
    """Send `head` then header bytes one at a time, for far longer than the read timeout;
    the gateway's answer (status, body) once it cuts in, or None if it never does. With
    `answered_first`, `head` also holds that many whole requests before the slow one: their
    answers (each a 200) are read as they come while the trickle goes on."""
    sock.sendall(head)
    rest = bytearray()
    for _ in range(TRICKLE_BYTES):
        try:
            sock.sendall(b"a")
        except OSError:  # closed under us: the answer, if any, is waiting
            break
        sock.settimeout(TRICKLE_PAUSE)
        try:
            if not (rest or sock.recv(1, socket.MSG_PEEK)):
                continue
        except TimeoutError:
            continue
        if not answered_first:
            break
        sock.settimeout(10)
        status, _, body = _answer(sock, rest)
        assert status == 200, body
        answered_first -= 1
    else:
        return None
    sock.settimeout(10)
    status, _, body = _answer(sock, rest)
    return status, body


async def test_slow_headers_are_cut_off_and_others_served(guarded: Running) -> None:
    def slowloris() -> tuple[int, bytes] | None:
        with _connect(guarded.url) as sock:
            return _trickle(sock, b"POST /function/echo HTTP/1.1\r\nHost: x\r\nX-Slow: ")

    attack = asyncio.create_task(asyncio.to_thread(slowloris))
    await asyncio.sleep(LIMITS["read_timeout"] / 2)
    await _still_serves(guarded)  # while the attacker still holds its connection
    answer = await attack
    assert answer is not None, "the gateway waited for headers sent a byte at a time"
    status, body = answer
    assert status == 408
    assert "NUVEM_READ_TIMEOUT" in _error(body)
    await _still_serves(guarded)


async def test_slow_headers_after_keep_alive_are_cut_off(guarded: Running) -> None:
    def second_request_slow() -> tuple[int, bytes] | None:
        with _connect(guarded.url) as sock:
            sock.sendall(_post("/function/echo"))
            assert _answer(sock)[0] == 200
            return _trickle(sock, b"GET /healthz HTTP/1.1\r\nX-Slow: ")

    answer = await asyncio.to_thread(second_request_slow)
    assert answer is not None, "the gateway waited for headers sent a byte at a time"
    assert answer[0] == 408
    await _still_serves(guarded)


def _pipelined_slow(url: str, first: bytes) -> tuple[int, bytes] | None:
    """One packet: the whole request `first`, then the start of the next one, whose headers
    then come a byte at a time while `first` is answered and after."""
    with _connect(url) as sock:
        return _trickle(sock, first + b"GET /healthz HTTP/1.1\r\nX-Slow: ", answered_first=1)


async def test_slow_pipelined_headers_are_cut_off(guarded: Running) -> None:
    answer = await asyncio.to_thread(_pipelined_slow, guarded.url, _post("/function/echo"))
    assert answer is not None, "the gateway waited for pipelined headers sent a byte at a time"
    status, body = answer
    assert status == 408
    assert "NUVEM_READ_TIMEOUT" in _error(body)
    await _still_serves(guarded)


async def test_slow_pipelined_headers_behind_a_slow_answer_are_cut_off(guarded: Running) -> None:
    # The first request takes longer than the read timeout: while it is answered, the slow
    # headers behind it are not late yet; once it is answered they are.
    await guarded.deploy("functions: {sleepy: {handler: 'handlers:sleep'}}", started=True)
    first = _post(f"/function/sleepy?seconds={1.5 * LIMITS['read_timeout']}")
    answer = await asyncio.to_thread(_pipelined_slow, guarded.url, first)
    assert answer is not None, "the gateway waited for pipelined headers sent a byte at a time"
    assert answer[0] == 408
    await _still_serves(guarded)


async def test_silent_connection_is_closed(guarded: Running) -> None:
    def silent() -> bytes:
        with _connect(guarded.url) as sock:
            sock.settimeout(10 * LIMITS["read_timeout"])
            return sock.recv(1)  # b"": closed without an answer, as nothing was asked

    assert await asyncio.to_thread(silent) == b""
    await _still_serves(guarded)


async def test_idle_keep_alive_is_closed(guarded: Running) -> None:
    def idle() -> bytes:
        with _connect(guarded.url) as sock:
            sock.sendall(_post("/function/echo"))
            status, _, _ = _answer(sock)
            assert status == 200
            sock.settimeout(5)
            return sock.recv(1)  # b"": the server closed the idle connection

    started = time.monotonic()
    assert await asyncio.to_thread(idle) == b""
    assert time.monotonic() - started < 4
    await _still_serves(guarded)


async def test_too_many_connections_503(guarded: Running) -> None:
    # Held open without a full request, each counts against max_connections.
    held = [_connect(guarded.url) for _ in range(MAX_CONNECTIONS + 2)]
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        await asyncio.sleep(0.3)
        status, _, _ = await asyncio.to_thread(
            _raw, guarded.url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert status == 503
    finally:
        for sock in held:
            sock.close()
    await asyncio.sleep(0.3)
    await _still_serves(guarded)


async def test_unauthenticated_flood_429_per_address(guarded: Running) -> None:
    request = b"POST /function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    statuses = [
        (await asyncio.to_thread(_raw, guarded.url, request, "127.0.0.2"))[0] for _ in range(10)
    ]
    assert statuses[0] == 401
    assert 429 in statuses
    status, headers, body = await asyncio.to_thread(_raw, guarded.url, request, "127.0.0.2")
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert "NUVEM_UNAUTH_RATE" in _error(body)
    # Another address is not held back.
    await _still_serves(guarded)


async def test_gateways_on_one_redis_share_the_unauthenticated_limit(
    tmp_path: Path, handlers_dir: Path, clean_redis: str, postgres_url: str
) -> None:
    # Slow to refill: a gateway counting alone would answer every one of these with 401.
    stores = {"queue_url": clean_redis, "records_url": postgres_url}
    limits: dict[str, Any] = {**stores, "unauth_rate": 0.05, "unauth_burst": 3}
    request = b"POST /function/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    async with (
        serving(handlers_dir, tmp_path / "one", **limits) as one,
        serving(handlers_dir, tmp_path / "two", **limits) as two,
    ):
        statuses = [
            (await asyncio.to_thread(_raw, gateway.url, request, "127.0.0.4"))[0]
            for gateway in (one, two) * 4
        ]
        # Three tokens in all; each gateway's first 401 past them also blocks it.
        assert statuses == [401] * 5 + [429] * 3
        # Another address still gets its own answer from either gateway.
        assert (await asyncio.to_thread(_raw, two.url, request, "127.0.0.5"))[0] == 401


async def test_unauthenticated_limit_holds_while_redis_is_down() -> None:
    async def refuses(scope: Scope, receive: Receive, send: Send) -> None:
        await respond_error(send, Unauthorized("no credentials"))

    class Unreachable:
        def take(self, key: str, rate: float, burst: int) -> float:
            raise RedisConnectionError("Redis is down")

    guard = Guard(refuses, Settings(unauth_rate=0.05, unauth_burst=2))
    guard.shared = Unreachable()
    statuses = []
    for _ in range(4):
        sent: list[Message] = []

        async def record(message: Message) -> None:
            sent.append(message)  # noqa: B023 (awaited before the next loop)

        scope = {"type": "http", "path": "/function/x", "query_string": b"", "headers": []}
        await guard(scope | {"client": ("10.0.0.1", 1)}, _nothing, record)
        statuses.append(sent[0]["status"])
    assert statuses == [401, 401, 401, 429]  # the third 401 found the bucket empty


async def _nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
