"""The node's side of a replica, without a cluster engine: code arrives as a bundle, only the
gateway holding the secret reaches the worker, and calls go straight to the worker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nuvem.cluster import code_bundle, link, stack_bundle
from nuvem.cluster.bundle_store import BundleStore, stored_code
from nuvem.cluster.replica_host import Endpoint, ReplicaHost
from nuvem.errors import BadRequest, Unauthorized, Unavailable
from nuvem.gateway.bundles_api import bundle_specs
from nuvem.runtime import protocol
from nuvem.runtime.protocol import CallMeta, HelloMeta, Kind, ResultMeta
from nuvem.stack.function import FunctionSpec
from nuvem.stores.memory import MemoryRecordStore
from support import wait_until

pytestmark = pytest.mark.anyio

HANDLERS = Path(__file__).resolve().parents[1] / "handlers"
SECRET = os.urandom(32)


class Frames:
    """The gateway's end of a link: frames in, one at a time."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[protocol.Frame | None] = asyncio.Queue()
        self.connection: protocol.FrameProtocol | None = None

    async def open(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        _, self.connection = await loop.create_connection(
            lambda: protocol.FrameProtocol(
                self.queue.put_nowait, lambda _: self.queue.put_nowait(None)
            ),
            sock=sock,
        )

    async def next(self) -> protocol.Frame | None:
        async with asyncio.timeout(30):
            return await self.queue.get()

    async def call(self, call_id: int, body: bytes = b"") -> protocol.Frame | None:
        assert self.connection is not None
        meta = CallMeta("POST", "/", "", [])
        self.connection.write(protocol.encode(Kind.CALL, call_id, meta.dump(), body))
        return await self.next()


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[ReplicaHost]:
    replica_host = ReplicaHost("127.0.0.1", tmp_path / "node")
    yield replica_host
    await replica_host.close()


async def _prepare(host: ReplicaHost, handler: str) -> tuple[Endpoint, code_bundle.CodeBundle]:
    bundle = code_bundle.pack(HANDLERS)
    # The gateway's folder does not exist on the node: the bundle replaces it.
    spec = FunctionSpec(name="fn", handler=handler, root="/nowhere/on/this/node")
    endpoint = await host.prepare(spec, "fn-1", bundle.data, bundle.digest, SECRET)
    return endpoint, bundle


async def _connected(host: ReplicaHost, endpoint: Endpoint) -> tuple[Frames, int]:
    serving = asyncio.create_task(host.serve(wait_s=10))
    sock = await link.connect(endpoint.host, endpoint.port, SECRET)
    pid = await serving
    frames = Frames()
    await frames.open(sock)
    hello = await frames.next()
    assert hello is not None
    assert hello.kind is Kind.HELLO
    assert HelloMeta.load(hello.meta).pid == pid
    return frames, pid


async def test_a_call_goes_straight_to_the_worker(host: ReplicaHost, tmp_path: Path) -> None:
    endpoint, bundle = await _prepare(host, "handlers:environment")
    frames, _ = await _connected(host, endpoint)
    answer = await frames.call(1)
    assert answer is not None
    assert answer.kind is Kind.RESULT
    assert ResultMeta.load(answer.meta).status == 200
    environ = json.loads(answer.body)
    assert environ["NUVEM_REPLICA"] == "fn-1"
    # No engine secrets (Ray's token) reach user code.
    assert not [key for key in environ if key.startswith("RAY_")]
    # The code came from the bundle, unpacked once under the node's state folder.
    assert (tmp_path / "node" / "code" / bundle.digest / "handlers.py").is_file()
    host.terminate()
    assert await asyncio.wait_for(host.wait(), 10) == 0  # SIGTERM drains, then exits


async def test_a_wrong_secret_is_refused_and_the_port_waits_for_the_gateway(
    host: ReplicaHost,
) -> None:
    endpoint, _ = await _prepare(host, "handlers:echo")
    serving = asyncio.create_task(host.serve(wait_s=10))
    with pytest.raises(Unauthorized, match="refused the connection"):
        await link.connect(endpoint.host, endpoint.port, os.urandom(32))
    assert not serving.done()  # an intruder does not take the replica's place
    sock = await link.connect(endpoint.host, endpoint.port, SECRET)
    await serving
    frames = Frames()
    await frames.open(sock)
    hello = await frames.next()
    assert hello is not None
    assert hello.kind is Kind.HELLO
    answer = await frames.call(7, b"ping")
    assert answer is not None
    assert (answer.call_id, answer.body) == (7, b"ping")


async def test_no_gateway_in_time_is_unavailable(host: ReplicaHost) -> None:
    await _prepare(host, "handlers:echo")
    with pytest.raises(Unavailable, match="no authenticated gateway connected within"):
        await host.serve(wait_s=0.3)


async def test_a_killed_worker_reports_its_signal_and_its_logs(host: ReplicaHost) -> None:
    endpoint, _ = await _prepare(host, "handlers:crash")
    frames, _pid = await _connected(host, endpoint)
    rss = host.rss()
    assert rss is not None
    assert rss > 1_000_000
    host.kill()
    assert await asyncio.wait_for(host.wait(), 10) == -signal.SIGKILL
    assert host.rss() is None
    assert await frames.next() is None  # the gateway sees the link drop at once


async def test_log_lines_are_collected_once(host: ReplicaHost, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "talk.py").write_text(
        "import sys\n"
        "def handle(req):\n"
        "    print('to stdout', flush=True)\n"
        "    print('to stderr', file=sys.stderr, flush=True)\n"
        "    return b'ok'\n"
    )
    bundle = code_bundle.pack(code)
    spec = FunctionSpec(name="talk", handler="talk:handle", root=str(code))
    endpoint = await host.prepare(spec, "talk-1", bundle.data, bundle.digest, SECRET)
    frames, _ = await _connected(host, endpoint)
    answer = await frames.call(1)
    assert answer is not None
    assert answer.body == b"ok"

    def collected() -> bool:
        return {(line.stream, line.text) for line in host.logs.lines} >= {
            ("stdout", "to stdout"),
            ("stderr", "to stderr"),
        }

    await wait_until(collected, within=10, what="both log lines")
    lines, dropped = host.collect_logs()
    assert dropped == 0
    assert len(lines) >= 2
    assert host.collect_logs() == ([], 0)


def test_a_connection_to_something_else_is_not_a_replica() -> None:
    async def scenario() -> None:
        async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"SSH-2.0-OpenSSH_9.2" + b" " * 40)
            await writer.drain()
            await reader.read()

        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(Unauthorized, match="is not a nuvem replica"):
                await link.connect("127.0.0.1", port, SECRET)

    asyncio.run(scenario())


async def test_a_bundled_function_runs_from_the_stored_bundle(
    host: ReplicaHost, tmp_path: Path
) -> None:
    project = tmp_path / "shop"
    (project / "app").mkdir(parents=True)
    (project / "nuvem.yaml").write_text(
        "functions:\n  greet: {handler: 'functions:greet', root: app}\n"
    )
    (project / "app" / "functions.py").write_text("def greet(req):\n    return b'from the store'\n")
    data = stack_bundle.build(project / "nuvem.yaml", "1.0.0").archive.data
    store = BundleStore(tmp_path / "gateway" / "bundles", MemoryRecordStore())
    digest = hashlib.sha256(data).hexdigest()
    store.put(data, digest)
    _, (spec,) = bundle_specs(store, digest)

    # What the gateway sends a node: the stored archive as uploaded, and where the function is.
    stored = stored_code(spec)
    assert stored is not None
    code, inside = stored
    assert (code.digest, code.data, inside) == (digest, data, "app")
    assert stored_code(spec.model_copy(update={"labels": {}})) is None  # a folder: packed

    endpoint = await host.prepare(spec, "greet-1", code.data, code.digest, SECRET, inside)
    frames, _ = await _connected(host, endpoint)
    answer = await frames.call(1)
    assert answer is not None
    assert answer.body == b"from the store"
    assert (tmp_path / "node" / "code" / digest / "app" / "functions.py").is_file()
    with pytest.raises(BadRequest, match="holds no function folder"):
        await ReplicaHost("127.0.0.1", tmp_path / "other").prepare(
            spec, "greet-2", code.data, code.digest, SECRET, "../app"
        )
    host.terminate()
    assert await asyncio.wait_for(host.wait(), 10) == 0
