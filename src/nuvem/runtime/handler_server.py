"""Serve a nuvem handler over HTTP, so the handler a venv function runs can run as an
image too (what `nuvem init --container` writes a Containerfile for; docs/containers.md).

Standard library only, like the worker: an image needs nuvem/__init__.py,
nuvem/handler.py and nuvem/runtime/{__init__,loader,handler_server}.py and no other part
of nuvem, so any image with Python 3.11 or later serves it.

    python3 -m nuvem.runtime.handler_server functions:hello --root /app --port 8080

A call is the handler's `Request` (method, the path after /function/NAME, query, headers,
body) and its answer what the worker would send (`nuvem.handler.to_http`); an HTTPError is
its 4xx, any other exception a 500 `{"error": ...}` with the traceback on stderr.
`/_/health` (of-watchdog's path) answers 200 once the handler has loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from nuvem.handler import Headers, HTTPError, Request, to_http
from nuvem.runtime import loader

HEALTH = "/_/health"
Answer = tuple[int, list[tuple[str, str]], bytes]


class HandlerServer:
    """One loaded handler and the event loop its async calls (and its setup) run on."""

    def __init__(self, reference: str, root: Path) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="handler-loop").start()
        self.handler = asyncio.run_coroutine_threadsafe(
            loader.load(reference, root), self.loop
        ).result()

    def answer(self, request: Request) -> Answer:
        try:
            if self.handler.is_async:
                future = asyncio.run_coroutine_threadsafe(
                    loader.invoke(self.handler, request), self.loop
                )
                return to_http(future.result())
            return to_http(loader.run_coroutine_sync(self.handler.call(request)))
        except HTTPError as exc:  # the handler answers the caller's mistake on purpose
            return exc.answer()
        except Exception as exc:  # a user error fails its own call, never the server
            traceback.print_exc(file=sys.stderr)
            data = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            return 500, [("content-type", "application/json")], data


def make_handler(server: HandlerServer) -> type[BaseHTTPRequestHandler]:
    class Call(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kept-alive connections, as the gateway's pool wants

        def _call(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if url.path == HEALTH:
                self._send((200, [("content-type", "text/plain")], b"ok"))
                return
            request = Request(
                body, self.command, url.path, url.query, Headers(self.headers.items())
            )
            self._send(server.answer(request))

        def _send(self, answer: Answer) -> None:
            status, headers, data = answer
            self.send_response(status)
            for key, value in headers:
                if key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _call  # noqa: N815 (http.server's)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the gateway logs every call; a line per call here would double them

    return Call


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serve a nuvem handler over HTTP")
    parser.add_argument("handler", help="module:callable or path/to/file.py[:callable]")
    parser.add_argument("--root", default=".", help="folder the handler is resolved from")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    args = parser.parse_args(argv)
    server = HandlerServer(args.handler, Path(args.root).resolve())
    http = ThreadingHTTPServer(("0.0.0.0", args.port), make_handler(server))
    print(f"serving {args.handler} on port {args.port}", file=sys.stderr, flush=True)
    http.serve_forever()


if __name__ == "__main__":
    main()
