"""A node's container relay for real, without Ray: the `ContainerActor` over the in-process
engine (uvicorn on loopback) listens on a node address of its own (127.0.0.x), and only
connections that open with the replica's signed preamble reach the container."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from nuvem.cluster.container_actor import ContainerActor, Started
from nuvem.cluster.container_relay import ContainerRelay, relay_refusal
from nuvem.cluster.relay_preamble import signer
from nuvem.errors import ClusterError
from nuvem.runtime.container_replica import ContainerReplica
from nuvem.runtime.container_runtime import ContainerRuntime
from nuvem.runtime.fake_engine import FakeEngine
from nuvem.runtime.http_pool import HttpPool
from nuvem.runtime.logbook import LogBook
from nuvem.runtime.protocol import CallMeta
from nuvem.stack.function import FunctionSpec
from support import asgi_body

pytestmark = pytest.mark.anyio

NODE_IP = f"127.0.{os.getpid() % 200 + 20}.9"  # apart from the Ray cluster's nodes
SECRET = os.urandom(32)
REPLICA = "echo-1"


class Counting:
    """An ASGI echo that counts the requests it got: what reached the container."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        body = await asgi_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def node() -> AsyncIterator[tuple[ContainerActor, Started, Counting]]:
    app = Counting()
    actor = ContainerActor(NODE_IP, FakeEngine({"localhost/echo:1": app}))
    spec = FunctionSpec.model_validate({"name": "echo", "image": "localhost/echo:1"})
    started = await actor.start(spec.model_dump_json(), REPLICA, SECRET)
    assert isinstance(started, Started), started
    try:
        yield actor, started, app
    finally:
        await actor.remove(started.run.name)
        await actor.close()


async def raw(port: int, data: bytes, host: str = NODE_IP) -> bytes:
    """What a plain TCP client that sends `data` reads until the relay closes."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def refusal(answer: bytes) -> str:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), answer
    error: str = json.loads(body)["error"]
    assert "call the function through the gateway" in error
    return error


async def test_the_container_is_on_loopback_and_the_relay_on_the_nodes_address(
    node: tuple[ContainerActor, Started, Counting],
) -> None:
    _, started, app = node
    assert started.run.host_ip == "127.0.0.1"
    assert started.node_ip == NODE_IP
    assert started.relay_port != started.run.host_port
    # Nothing listens on the node's address at the container's port.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(NODE_IP, started.run.host_port)
    pool = HttpPool(NODE_IP, started.relay_port, preamble=signer(SECRET, REPLICA))
    try:
        answers = await asyncio.gather(
            *(pool.request("POST", "/", [], f"call {n}".encode()) for n in range(8))
        )
        assert [a.body for a in answers] == [f"call {n}".encode() for n in range(8)]
        # Kept alive: later calls reuse the signed connections, and big bodies pass whole.
        big = os.urandom(4 * 2**20)
        answer = await pool.request("POST", "/", [], big)
        assert answer.status == 200
        assert answer.body == big
        assert pool.connections == 8
    finally:
        await pool.close()
    assert app.calls == 9


async def test_unsigned_connections_never_reach_the_container(
    node: tuple[ContainerActor, Started, Counting],
) -> None:
    actor, started, app = node
    port = started.relay_port
    request = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi"
    assert "did not start with the relay's preamble" in refusal(await raw(port, request))
    wrong = signer(os.urandom(32), REPLICA)()
    assert "not signed with this replica's secret" in refusal(await raw(port, wrong + request))
    other = signer(SECRET, "echo-2")()
    assert "names replica 'echo-2'" in refusal(await raw(port, other + request))
    # A preamble seen on the network, sent again: admitted once only.
    seen = signer(SECRET, REPLICA)()
    first = await raw(port, seen + request.replace(b"host: x", b"connection: close"))
    assert first.startswith(b"HTTP/1.1 200 "), first
    assert b"\r\nhi\r\n" in first, first
    assert "a replay" in refusal(await raw(port, seen + request))
    assert app.calls == 1  # only the signed call
    assert actor.refusals() == 4
    # Logged once for this address, however many refusals came from it.
    lines = [line.text for line in actor.logs.collect()[0] if "relay refused" in line.text]
    assert len(lines) == 1, lines
    assert "a connection from 127." in lines[0], lines
    assert f"to port {port}:" in lines[0], lines


async def test_a_silent_or_endless_first_line_is_cut_off() -> None:
    logged: list[str] = []
    reached: list[bytes] = []

    async def target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(target, "127.0.0.1", 0)
    target_port = server.sockets[0].getsockname()[1]
    relay = ContainerRelay(SECRET, REPLICA, target_port, logged.append, preamble_timeout=0.2)
    port = await relay.start(NODE_IP)
    try:
        reader, writer = await asyncio.open_connection(NODE_IP, port)
        assert "no preamble within 0.2s" in refusal(await asyncio.wait_for(reader.read(), 10))
        writer.close()
        assert "no preamble within the first 256 bytes" in refusal(await raw(port, b"x" * 300))
        # The connection ends before its line: refused, not relayed.
        reader, writer = await asyncio.open_connection(NODE_IP, port)
        writer.write(b"NUVEM-RELAY-1 echo")
        writer.write_eof()
        assert "ended before its preamble" in refusal(await asyncio.wait_for(reader.read(), 10))
        writer.close()
        assert reached == []
        assert relay.refusals == 3
        assert len(logged) == 1
    finally:
        await relay.close()
        server.close()


async def test_a_closed_relay_refuses_connections(
    node: tuple[ContainerActor, Started, Counting],
) -> None:
    actor, started, _ = node
    await actor.remove(started.run.name)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(NODE_IP, started.relay_port)


async def test_a_refusal_of_the_gateways_own_connection_is_an_error_naming_the_clocks() -> None:
    """A node whose clock is two minutes off refuses the gateway's preambles: the call
    fails as a cluster error naming the relay and the fix, not as the function's 401."""
    app = Counting()
    engine = FakeEngine({"localhost/echo:1": app})
    spec = FunctionSpec.model_validate({"name": "echo", "image": "localhost/echo:1"})
    launched = await ContainerRuntime(engine, LogBook()).launch(spec, REPLICA)
    await launched.pool.close()
    logged: list[str] = []
    relay = ContainerRelay(
        SECRET, REPLICA, launched.run.host_port, logged.append, clock=lambda: time.time() + 120
    )
    port = await relay.start(NODE_IP)
    replica = ContainerReplica(
        REPLICA,
        "echo",
        spec.fingerprint(),
        engine,
        launched.run,
        launched.attached,
        HttpPool(NODE_IP, port, preamble=signer(SECRET, REPLICA)),
        node=NODE_IP,
        refusal=functools.partial(relay_refusal, "echo", REPLICA, NODE_IP),
    )
    try:
        with pytest.raises(ClusterError) as refused:
            await replica.submit(CallMeta("POST", "/", "", []), b"hi")
        message = str(refused.value)
        assert f"the relay of replica {REPLICA} on node {NODE_IP} refused" in message
        assert "120s away from this node's clock" in message
        assert "NTP" in refused.value.hint
        assert app.calls == 0
        assert len(logged) == 1
    finally:
        await replica.drain_and_stop(5)
        await relay.close()
        await engine.close()
