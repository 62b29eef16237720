"""The handler server an image runs (`nuvem init --container`): a handler's answers, its
HTTPError and its failures over a real socket, as the worker would give them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from nuvem.runtime.handler_server import HEALTH, HandlerServer, make_handler

HANDLERS = """
from nuvem import HTTPError, Response


def hello(req):
    return {"message": f"hello, {req.query.get('name', 'world')}", "path": req.path}


async def later(req):
    return Response(201, req.body, {"x-kind": req.headers.get("x-kind", "")})


def picky(req):
    raise HTTPError(422, "send a name")


def broken(req):
    raise ValueError("no")


class Counter:
    def setup(self):
        self.base = 10

    def predict(self, batch):
        return [self.base + len(r.body) for r in batch]
"""


Starter = Callable[[str], httpx.Client]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Starter]:
    # Not "handlers": the fake runtime imports tests/handlers under that name in this process.
    (tmp_path / "served_handlers.py").write_text(HANDLERS)
    servers: list[ThreadingHTTPServer] = []

    def start(reference: str) -> httpx.Client:
        handler = HandlerServer(f"served_handlers:{reference}", tmp_path)
        http = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(handler))
        threading.Thread(target=http.serve_forever, daemon=True).start()
        servers.append(http)
        return httpx.Client(base_url=f"http://127.0.0.1:{http.server_address[1]}")

    yield start
    for http in servers:
        http.shutdown()
        http.server_close()


def test_answers_as_the_worker_would(serve: Starter) -> None:
    start = serve
    with start("hello") as client:
        response = client.get("/a/b?name=image")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.content == b'{"message":"hello, image","path":"/a/b"}'
        assert client.get(HEALTH).status_code == 200
    with start("later") as client:
        response = client.post("/", content=b"raw", headers={"x-kind": "async"})
        assert response.status_code == 201
        assert response.content == b"raw"
        assert response.headers["x-kind"] == "async"
    with start("Counter") as client:
        assert client.post("/", content=b"abc").json() == 13


def test_an_http_error_is_its_status_and_a_failure_a_500(serve: Starter) -> None:
    start = serve
    with start("picky") as client:
        response = client.post("/")
        assert response.status_code == 422
        assert response.json() == {"error": "send a name"}
    with start("broken") as client:
        response = client.post("/")
        assert response.status_code == 500
        assert response.json() == {"error": "ValueError: no"}
