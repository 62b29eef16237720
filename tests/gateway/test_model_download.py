"""Weights given by URL: downloaded once into the state folder's cache, checksum checked."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from model_support import ModelGateway, jpeg, model_gateway, weights_file
from nuvem.stack.loader import load_stack_text
from support import wait_until

pytestmark = pytest.mark.anyio


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    downloads: list[str]

    def do_GET(self) -> None:
        self.downloads.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


@pytest.fixture
def weights_server(tmp_path: Path) -> Iterator[tuple[str, list[str], str]]:
    """A local HTTP server for a weights file; yields its URL, the paths fetched, the sha256."""
    folder = tmp_path / "www"
    folder.mkdir()
    source = weights_file()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    name = f"resnet18-{digest[:8]}.safetensors"
    shutil.copy(source, folder / name)
    downloads: list[str] = []
    handler = type("Handler", (CountingHandler,), {"downloads": downloads})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{name}", downloads, digest
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[ModelGateway]:
    async with model_gateway(tmp_path) as gateway:
        yield gateway


async def test_url_weights_download_once_for_every_replica(
    served: ModelGateway, weights_server: tuple[str, list[str], str]
) -> None:
    url, downloads, digest = weights_server
    await served.deploy(
        f"""
        functions:
          resnet:
            model: {{arch: resnet18, weights: "{url}", sha256: {digest}}}
            scaling: {{min: 2, max: 2}}
        """
    )
    assert len(downloads) == 1  # the second replica found the file the first one fetched
    cached = served.root / "state" / "models" / url.rsplit("/", 1)[1]
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest
    response = await served.admin.post("/predictions/resnet", content=jpeg())
    assert response.status_code == 200
    assert len(response.json()) == 5


async def test_a_checksum_mismatch_fails_the_deploy_and_calls_say_why(
    served: ModelGateway, weights_server: tuple[str, list[str], str]
) -> None:
    url, _, _ = weights_server
    stack = load_stack_text(
        f'functions:\n  bad:\n    model: {{arch: resnet18, weights: "{url}", sha256: deadbeef}}\n',
        "nuvem.yaml",
        served.root,
    )
    deployment = served.platform.controller.deploy(stack.functions["bad"])
    await wait_until(lambda: deployment.last_error is not None, within=60, what="setup failed")
    assert "checksum mismatch" in str(deployment.last_error)
    response = await served.admin.post("/predictions/bad", content=jpeg())
    assert response.status_code == 503
    assert "checksum mismatch" in response.json()["error"]
    assert not any((served.root / "state" / "models").glob("*.safetensors"))
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        ready = await anonymous.get("/v2/models/bad/ready")
    assert ready.status_code == 503
