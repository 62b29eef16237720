"""The worker process: loads one handler and serves calls over an inherited socket.

Run as `python -m nuvem.runtime.worker --fd N --handler REF --root DIR`. The gateway holds
the other end of a socketpair (on a cluster node: of an authenticated TCP connection);
frames are multiplexed by call id, so one connection carries up to `--max-inflight`
concurrent calls. Standard library only (uvloop is used when the environment has it),
because this runs inside every function's own environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nuvem.handler import Headers, HTTPError, Request, to_http
from nuvem.runtime import loader, protocol
from nuvem.runtime.batching import Batcher, Item, Outcome
from nuvem.runtime.protocol import CallMeta, ErrorMeta, HelloMeta, Kind, ResultMeta
from nuvem.startup_marks import mark


class Worker:
    def __init__(
        self,
        handler: loader.LoadedHandler,
        threads: int,
        max_batch_size: int = 1,
        max_delay: float = 0.0,
    ) -> None:
        self.handler = handler
        self.batcher: Batcher | None = None
        self.batched = 0  # calls handed to the batcher and not yet answered
        self.arrived: list[Item] = []  # this read's calls, handed to the batcher as one group
        self.batch_idle = asyncio.Event()
        if handler.predict is not None:
            loop = asyncio.get_running_loop()
            self.batcher = Batcher(
                handler.predict,
                max_batch_size,
                max_delay,
                lambda outcomes: loop.call_soon_threadsafe(self._deliver, outcomes),
            )
            threads = 0  # neither inline nor a pool: the batcher's thread runs predict
        # One thread means the event loop itself runs a sync handler: no hand-off between
        # threads, which halves the worker's cost per call. Calls still pipeline over the
        # socket; they simply run one after another, as they would under the GIL anyway.
        self.inline = not handler.is_async and threads == 1
        self.pool = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="handler")
            if not handler.is_async and threads > 1
            else None
        )
        self.tasks: set[asyncio.Task[None]] = set()
        self.connection: protocol.FrameProtocol | None = None
        self.lost = asyncio.Event()
        self.answered_once = False  # for the first call's start-up marks

    def on_frame(self, frame: protocol.Frame) -> None:
        if frame.kind is not Kind.CALL:
            return
        if not self.answered_once:
            mark("worker: call received")
        meta = CallMeta.load(frame.meta)
        if self.batcher is not None:
            self.batched += 1
            self.batch_idle.clear()
            request = Request(frame.body, meta.method, meta.path, meta.query, Headers(meta.headers))
            if not self.arrived:
                # Runs after this data_received: every call of the read is in by then.
                asyncio.get_running_loop().call_soon(self._hand_over)
            self.arrived.append(Item(frame.call_id, request, meta.behind))
            return
        if self.inline:
            # Runs here, inside data_received: every call in one read is answered in order,
            # and their answers leave together in one send.
            self._answer(frame.call_id, self._run_sync, meta, frame.body)
            return
        task = asyncio.get_running_loop().create_task(self._call(frame.call_id, meta, frame.body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _hand_over(self) -> None:
        assert self.batcher is not None
        arrived, self.arrived = self.arrived, []
        self.batcher.submit_many(arrived)

    def on_lost(self, exc: Exception | None) -> None:
        self.lost.set()  # the gateway closed its end: stop

    def _run_sync(self, meta: CallMeta, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        request = Request(body, meta.method, meta.path, meta.query, Headers(meta.headers))
        return to_http(loader.run_coroutine_sync(self.handler.call(request)))

    def _answer(
        self,
        call_id: int,
        run: Callable[[CallMeta, bytes], tuple[int, list[tuple[str, str]], bytes]],
        meta: CallMeta,
        body: bytes,
    ) -> None:
        try:
            status, headers, data = run(meta, body)
        except HTTPError as exc:  # the handler answers the caller's mistake on purpose
            status, headers, data = exc.answer()
        except Exception as exc:  # a user error fails its own call, never the replica
            self._fail(call_id, exc)
            return
        self._send_result(call_id, status, headers, data)

    def _send_result(
        self, call_id: int, status: int, headers: list[tuple[str, str]], data: bytes
    ) -> None:
        assert self.connection is not None
        head, payload = protocol.encode_parts(
            Kind.RESULT, call_id, ResultMeta(status, headers).dump(), data
        )
        self.connection.write(head, payload)

    def _fail(self, call_id: int, exc: BaseException) -> None:
        assert self.connection is not None
        error = ErrorMeta(type(exc).__name__, str(exc), traceback.format_exc())
        print(error.traceback, file=sys.stderr, end="", flush=True)
        self.connection.write(protocol.encode(Kind.ERROR, call_id, error.dump()))

    async def _call(self, call_id: int, meta: CallMeta, body: bytes) -> None:
        try:
            if self.pool is None:
                request = Request(body, meta.method, meta.path, meta.query, Headers(meta.headers))
                status, headers, data = to_http(await loader.invoke(self.handler, request))
            else:
                loop = asyncio.get_running_loop()
                status, headers, data = await loop.run_in_executor(
                    self.pool, self._run_sync, meta, body
                )
        except HTTPError as exc:  # the handler answers the caller's mistake on purpose
            status, headers, data = exc.answer()
        except Exception as exc:  # a user error fails its own call, never the replica
            self._fail(call_id, exc)
            return
        self._send_result(call_id, status, headers, data)

    def _deliver(self, outcomes: list[Outcome]) -> None:
        assert self.connection is not None
        if not self.answered_once:
            self.answered_once = True
            mark("worker: first batch answered")
        for outcome in outcomes:
            self.batched -= 1
            if outcome.result is not None:
                self._send_result(outcome.call_id, *outcome.result)
                continue
            exc = outcome.error
            if isinstance(exc, HTTPError):
                self._send_result(outcome.call_id, *exc.answer())
                continue
            error = ErrorMeta(type(exc).__name__, str(exc), outcome.traceback)
            print(error.traceback, file=sys.stderr, end="", flush=True)
            self.connection.write(protocol.encode(Kind.ERROR, outcome.call_id, error.dump()))
        if self.batched == 0:
            self.batch_idle.set()

    async def drain(self) -> None:
        if self.batcher is not None and self.batched:
            await self.batch_idle.wait()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.connection is not None:
            # close() sends what is buffered first; connection_lost tells when it has gone.
            self.connection.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self.lost.wait()


async def main_async(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=args.fd)
    worker: Worker | None = None

    def on_frame(frame: protocol.Frame) -> None:
        if worker is not None:  # the gateway sends nothing before HELLO
            worker.on_frame(frame)

    lost = asyncio.Event()

    def on_lost(exc: Exception | None) -> None:
        lost.set()
        if worker is not None:
            worker.on_lost(exc)

    def make() -> protocol.FrameProtocol:
        return protocol.FrameProtocol(on_frame, on_lost)

    if sock.family == socket.AF_UNIX:
        _, connection = await loop.create_unix_connection(make, sock=sock)
    else:
        # A replica on a cluster node: the gateway's authenticated TCP connection, handed over
        # by the node's replica host. Small frames must not wait for Nagle's timer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _, connection = await loop.create_connection(make, sock=sock)
    try:
        handler = await loader.load(args.handler, Path(args.root))
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        error = ErrorMeta(type(exc).__name__, message, traceback.format_exc())
        connection.write(protocol.encode(Kind.SETUP_FAILED, 0, error.dump()))
        connection.close()
        return 3
    mark("worker: handler set up")
    worker = Worker(handler, args.threads, args.max_batch_size, args.max_delay_ms / 1000)
    worker.connection = connection
    hello = HelloMeta(os.getpid(), sys.version.split()[0])
    connection.write(protocol.encode(Kind.HELLO, 0, hello.dump()))
    stop = asyncio.Event()
    # SIGTERM means "drain": finish what is in flight, then exit; the gateway sends no new calls.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # Ctrl-C is the gateway's to handle
    waiters = {loop.create_task(stop.wait()), loop.create_task(lost.wait())}
    _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await worker.drain()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nuvem-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--max-delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    code = runner(main_async(args))
    sys.stdout.flush()
    sys.stderr.flush()
    # Handler threads may still be stuck in user code; they must not keep the process alive.
    os._exit(code)


if __name__ == "__main__":
    main()
