"""An HTTP function image for the container tests: echoes what it was sent, as JSON.

`/_/health` answers 200 (500 with HEALTH=fail), `/exit?code=N` ends the process with N,
`/alloc?mb=N` holds N MiB (past the memory limit: killed), anything else echoes. Standard
library only: it runs on the bare Debian base image.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

held: list[bytearray] = []


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive connections, as the gateway's pool wants

    def _answer(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        print(f"{self.command} {url.path}", flush=True)
        if url.path == "/_/health":
            status = 500 if os.environ.get("HEALTH") == "fail" else 200
            return self._send(status, b"ok", "text/plain")
        if url.path == "/exit":
            os._exit(int(query.get("code", "3")))
        if url.path == "/alloc":
            held.append(bytearray(int(query.get("mb", "1")) * 2**20))
            return self._send(200, b"held", "text/plain")
        if url.path == "/raw":
            return self._send(200, body, self.headers.get("content-type", "text/plain"))
        return self._echo(url.path, query, body)

    def _echo(self, path: str, query: dict[str, str], body: bytes) -> None:
        answer = {
            "method": self.command,
            "path": path,
            "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode(errors="replace"),
            "env": {k: v for k, v in os.environ.items() if k in ("MODE", "NUVEM_FUNCTION")},
            "version": os.environ.get("VERSION", ""),
        }
        self._send(200, json.dumps(answer).encode(), "application/json")

    def _send(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 (http.server's names)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request is printed above, to stdout


if __name__ == "__main__":
    print("serving on 8080", file=sys.stderr, flush=True)
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Echo).serve_forever()
