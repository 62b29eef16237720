"""The worker process: loads one handler and serves calls over an inherited socket.

Run as `python -m nuvem.runtime.worker --fd N --handler REF --root DIR`. The gateway holds
the other end of a socketpair; frames are multiplexed by call id, so one connection
carries up to `--max-inflight` concurrent calls. Standard library only (uvloop is used
when the environment has it), because this runs inside every function's own environment.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nuvem.handler import Headers, Request, to_http
from nuvem.runtime import loader, protocol
from nuvem.runtime.protocol import CallMeta, ErrorMeta, HelloMeta, Kind, ResultMeta


class Worker:
    def __init__(self, handler: loader.LoadedHandler, threads: int) -> None:
        self.handler = handler
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
        self.writer: asyncio.StreamWriter | None = None

    def _run_sync(self, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        return to_http(loader.run_coroutine_sync(self.handler.call(request)))

    async def _call(self, call_id: int, meta: CallMeta, body: bytes) -> None:
        request = Request(body, meta.method, meta.path, meta.query, Headers(meta.headers))
        try:
            if self.inline:
                status, headers, data = self._run_sync(request)
            elif self.pool is None:
                status, headers, data = to_http(await loader.invoke(self.handler, request))
            else:
                loop = asyncio.get_running_loop()
                status, headers, data = await loop.run_in_executor(
                    self.pool, self._run_sync, request
                )
            frame = protocol.encode(Kind.RESULT, call_id, ResultMeta(status, headers).dump(), data)
        except Exception as exc:  # a user error fails its own call, never the replica
            error = ErrorMeta(type(exc).__name__, str(exc), traceback.format_exc())
            print(error.traceback, file=sys.stderr, end="", flush=True)
            frame = protocol.encode(Kind.ERROR, call_id, error.dump())
        assert self.writer is not None
        self.writer.write(frame)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        while True:
            try:
                frame = await protocol.read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the gateway closed its end: stop
            if frame.kind is not Kind.CALL:
                continue
            call = self._call(frame.call_id, CallMeta.load(frame.meta), frame.body)
            if self.inline:
                await call  # no task: the call runs to its end before the next frame is read
                continue
            task = asyncio.create_task(call)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def drain(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.writer is not None:
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()


async def main_async(args: argparse.Namespace) -> int:
    sock = socket.socket(fileno=args.fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        handler = await loader.load(args.handler, Path(args.root))
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        error = ErrorMeta(type(exc).__name__, message, traceback.format_exc())
        writer.write(protocol.encode(Kind.SETUP_FAILED, 0, error.dump()))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return 3
    worker = Worker(handler, args.threads)
    hello = HelloMeta(os.getpid(), sys.version.split()[0])
    writer.write(protocol.encode(Kind.HELLO, 0, hello.dump()))
    serving = asyncio.create_task(worker.serve(reader, writer))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGTERM means "drain": finish what is in flight, then exit; the gateway sends no new calls.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # Ctrl-C is the gateway's to handle
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    await worker.drain()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nuvem-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--threads", type=int, default=1)
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
