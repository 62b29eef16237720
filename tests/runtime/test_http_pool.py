"""The HTTP client the gateway calls containers with: a real server on loopback answering
each way HTTP/1.1 allows (length, chunked, to close, 100 first), dropping connections
mid-call, and speaking badly; plus the answer parser fed in any cut."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuvem.errors import BadRequest
from nuvem.runtime.http_connection import HttpConnection, HttpFailed, request_head
from nuvem.runtime.http_pool import HttpPool
from nuvem.runtime.replica import CallResult
from support import FakeClock

pytestmark = pytest.mark.anyio

BIG = bytes(range(256)) * 20_000  # 5 MB, each way


class Server:
    """Answers by path: /echo (the request as JSON), /raw (the body back), /chunked,
    /to-close, /continue, /half (closes mid-body), /drop-once (closes without answering
    the first time), /garbage, /silent (never answers)."""

    def __init__(self) -> None:
        self.connections = 0
        self.dropped_once = False
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                lines = head.split("\r\n")[:-2]
                method, target, _ = lines[0].split(" ")
                headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
                length = int(dict((k.lower(), v) for k, v in headers)["content-length"])
                body = await reader.readexactly(length)
                if not await self.answer(writer, method, target, headers, body):
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(
        self,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: list[Any],
        body: bytes,
    ) -> bool:
        """Write the answer; False once the connection is to close."""
        path = target.partition("?")[0]
        if path == "/echo":
            seen = {"method": method, "target": target, "headers": headers, "body": body.decode()}
            data = json.dumps(seen).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nX-Seen: yes\r\nContent-Length: %d\r\n\r\n" % len(data)
            )
            writer.write(data)
        elif path == "/raw":
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        elif path == "/chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: parts\r\n\r\n")
            for part in (body[:7], body[7:100_000], body[100_000:]):
                if part:
                    writer.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            writer.write(b"0\r\nX-Trailer: dropped\r\n\r\n")
        elif path == "/to-close":
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
            return False
        elif path == "/continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok")
        elif path == "/half":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
            return False
        elif path == "/drop-once" and not self.dropped_once:
            self.dropped_once = True
            return False
        elif path == "/drop-once":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nagain")
        elif path == "/garbage":
            writer.write(b"SPDY/9 what\r\n\r\n")
        elif path == "/silent":
            await asyncio.sleep(3600)
        return True


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    serving = Server()
    listener = await asyncio.start_server(serving.handle, "127.0.0.1", 0)
    serving.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield serving
        listener.close()


@pytest.fixture
async def pool(server: Server) -> AsyncIterator[HttpPool]:
    made = HttpPool("127.0.0.1", server.port)
    yield made
    await made.close()


async def test_method_target_headers_and_body_pass_through(pool: HttpPool) -> None:
    sent = [("x-call-id", "c-1"), ("Host", "gateway.example"), ("content-length", "999")]
    sent += [
        ("transfer-encoding", "chunked"),
        ("connection", "upgrade"),
        ("expect", "100-continue"),
    ]
    result = await pool.request("PUT", "/echo?x=1&y=%20", sent, b"payload")
    seen = json.loads(result.body)
    assert result.status == 200
    assert (seen["method"], seen["target"], seen["body"]) == ("PUT", "/echo?x=1&y=%20", "payload")
    # The caller's Host stays; framing and hop-by-hop headers are the pool's own.
    assert seen["headers"] == [
        ["x-call-id", "c-1"],
        ["Host", "gateway.example"],
        ["content-length", "7"],
    ]
    assert ("x-seen", "yes") in result.headers
    assert all(name != "content-length" for name, _ in result.headers)


async def test_connections_are_kept_alive_and_reused(pool: HttpPool, server: Server) -> None:
    for _ in range(5):
        assert (await pool.request("POST", "/raw", [], b"x")).body == b"x"
    assert server.connections == 1
    await asyncio.gather(*(pool.request("POST", "/raw", [], b"y") for _ in range(8)))
    assert pool.connections == 8  # one per call in flight, no limit of the pool's own


async def test_large_bodies_both_ways(pool: HttpPool) -> None:
    result = await pool.request("POST", "/raw", [], BIG)
    assert (result.status, result.body) == (201, BIG)


async def test_a_chunked_answer_is_joined_and_its_trailers_dropped(
    pool: HttpPool, server: Server
) -> None:
    result = await pool.request("POST", "/chunked", [], BIG)
    assert result.body == BIG
    assert result.headers == [("x-kind", "parts")]
    assert (await pool.request("POST", "/raw", [], b"next")).body == b"next"
    assert server.connections == 1  # the chunked answer left the connection clean


async def test_an_answer_read_to_close_ends_with_the_connection(
    pool: HttpPool, server: Server
) -> None:
    assert (await pool.request("POST", "/to-close", [], b"all of it")).body == b"all of it"
    assert (await pool.request("POST", "/raw", [], b"z")).body == b"z"
    assert server.connections == 2


async def test_informational_answers_are_skipped(pool: HttpPool) -> None:
    result = await pool.request("POST", "/continue", [], b"")
    assert (result.status, result.body) == (202, b"ok")


async def test_a_head_answer_has_no_body(pool: HttpPool) -> None:
    result = await pool.request("HEAD", "/raw", [], b"")
    assert (result.status, result.body) == (201, b"")
    assert (await pool.request("POST", "/raw", [], b"after")).body == b"after"


async def test_a_connection_closed_mid_answer_fails_the_call(pool: HttpPool) -> None:
    with pytest.raises(HttpFailed) as failed:
        await pool.request("POST", "/half", [], b"")
    assert failed.value.answered
    assert "connection closed before the answer" in str(failed.value)


async def test_a_dropped_reused_connection_is_retried_only_for_idempotent_methods(
    pool: HttpPool, server: Server
) -> None:
    await pool.request("POST", "/raw", [], b"warm")
    with pytest.raises(HttpFailed) as failed:
        await pool.request("POST", "/drop-once", [], b"")
    assert not failed.value.answered
    server.dropped_once = False
    await pool.request("POST", "/raw", [], b"warm")
    result = await pool.request("GET", "/drop-once", [], b"")
    assert result.body == b"again"


async def test_an_answer_that_is_not_http_fails_the_call(pool: HttpPool) -> None:
    with pytest.raises(HttpFailed, match=r"not HTTP/1\.x"):
        await pool.request("POST", "/garbage", [], b"")
    assert (await pool.request("POST", "/raw", [], b"fine")).body == b"fine"


async def test_a_caller_that_gives_up_closes_its_connection(pool: HttpPool, server: Server) -> None:
    call = pool.request("POST", "/silent", [], b"")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call, 0.2)
    assert (await pool.request("POST", "/raw", [], b"later")).body == b"later"
    assert server.connections == 2  # not the given-up one: its answer might still come


async def test_an_idle_connection_past_its_timeout_is_not_reused(server: Server) -> None:
    clock = FakeClock()
    pool = HttpPool("127.0.0.1", server.port, idle_timeout=10, clock=clock)
    await pool.request("POST", "/raw", [], b"1")
    clock.advance(11)
    await pool.request("POST", "/raw", [], b"2")
    assert server.connections == 2
    await pool.close()


async def test_nothing_listening_and_a_closed_pool_fail_clearly(pool: HttpPool) -> None:
    nobody = HttpPool("127.0.0.1", 1)
    with pytest.raises(HttpFailed, match="could not connect"):
        await nobody.request("GET", "/", [], b"")
    await pool.close()
    with pytest.raises(HttpFailed, match="pool is closed"):
        await pool.request("GET", "/", [], b"")


def test_a_line_break_in_a_header_cannot_split_the_request() -> None:
    with pytest.raises(BadRequest, match="line break"):
        request_head("GET", "/", "h:1", [("x-a", "v\r\nx-injected: 1")], 0)
    head = request_head("GET", "/", "h:1", [("x-name", "caf\xe9")], 0)
    assert b"x-name: caf\xe9\r\n" in head  # latin-1, as the gateway decoded it


# -- the parser, fed any cut of the bytes ----------------------------------------------------


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True


def chunked(body: bytes, sizes: list[int]) -> bytes:
    parts, offset = [], 0
    for size in sizes:
        part = body[offset : offset + size]
        offset += size
        if part:
            parts.append(b"%x\r\n%s\r\n" % (len(part), part))
    if offset < len(body):
        parts.append(b"%x\r\n%s\r\n" % (len(body) - offset, body[offset:]))
    return b"".join(parts) + b"0\r\n\r\n"


@given(
    bodies=st.lists(st.binary(max_size=200), min_size=1, max_size=4),
    sizes=st.lists(st.integers(min_value=1, max_value=50), max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=61), min_size=1, max_size=30),
    chunk=st.booleans(),
)
def test_answers_survive_any_cut(
    bodies: list[bytes], sizes: list[int], cuts: list[int], chunk: bool
) -> None:
    loop = asyncio.new_event_loop()
    try:
        freed: list[HttpConnection] = []
        connection = HttpConnection(freed.append, lambda c: None)
        transport = Recorder()
        connection.connection_made(transport)
        for body in bodies:
            future: asyncio.Future[CallResult] = loop.create_future()
            connection.send(b"GET / HTTP/1.1\r\n\r\n", b"", future, head_only=False)
            framing = b"transfer-encoding: chunked" if chunk else b"content-length: %d" % len(body)
            stream = b"HTTP/1.1 200 OK\r\nx-a: 1\r\n%s\r\n\r\n" % framing
            stream += chunked(body, sizes) if chunk else body
            offset = 0
            for cut in cuts * (len(stream) // sum(cuts) + 1):
                if offset >= len(stream):
                    break
                connection.data_received(stream[offset : offset + cut])
                offset += cut
            assert future.done()
            assert future.result() == CallResult(200, [("x-a", "1")], body)
        assert len(freed) == len(bodies)
        assert not transport.aborted
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcd\r\n", "longer than"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "not hex"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "not a number"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "without a colon"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
    ],
)
def test_a_malformed_answer_fails_the_call_and_the_connection(stream: bytes, error: str) -> None:
    loop = asyncio.new_event_loop()
    try:
        connection = HttpConnection(lambda c: None, lambda c: None)
        transport = Recorder()
        connection.connection_made(transport)
        future: asyncio.Future[CallResult] = loop.create_future()
        connection.send(b"GET / HTTP/1.1\r\n\r\n", b"", future, head_only=False)
        connection.data_received(stream)
        with pytest.raises(HttpFailed, match=error):
            future.result()
        assert transport.aborted
    finally:
        loop.close()
