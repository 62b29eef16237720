"""Weights given by URL: downloaded once into the state folder's cache, checksum checked."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from nuvem.stack.loader import load_stack_text
from support import Running, file_server, jpeg, serving, wait_until, weights_file

pytestmark = pytest.mark.anyio


@pytest.fixture
def weights_server() -> Iterator[tuple[str, Counter[str], str]]:
    """A local HTTP server for a weights file; yields its URL, the requests by path and the
    sha256."""
    source = weights_file().read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    name = f"resnet18-{digest[:8]}.safetensors"
    with file_server() as server:
        server.files[f"/{name}"] = source
        yield f"{server.url}/{name}", server.requests, digest


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Running]:
    async with serving(tmp_path, tmp_path / "state", client_timeout=60.0) as gateway:
        yield gateway


async def test_url_weights_download_once_for_every_replica(
    served: Running, weights_server: tuple[str, Counter[str], str]
) -> None:
    url, requests, digest = weights_server
    await served.deploy(
        f"""
        functions:
          resnet:
            model: {{arch: resnet18, weights: "{url}", sha256: {digest}}}
            scaling: {{min: 2, max: 2}}
        """,
        within=120,
        started=True,
    )
    assert sum(requests.values()) == 1  # the second replica found the file the first one fetched
    cached = served.root / "state" / "models" / url.rsplit("/", 1)[1]
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest
    response = await served.admin.post("/predictions/resnet", content=jpeg())
    assert response.status_code == 200
    assert len(response.json()) == 5


async def test_a_checksum_mismatch_fails_the_deploy_and_calls_say_why(
    served: Running, weights_server: tuple[str, Counter[str], str]
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
    error = response.json()["error"]
    assert "checksum mismatch" in error
    # A model has no handler to fix, and the answer carries one hint, not two stacked.
    assert "handler" not in error
    assert "model failed to load" in error
    assert error.count("(") == error.count(")") <= 2, error
    assert not any((served.root / "state" / "models").glob("*.safetensors"))
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        ready = await anonymous.get("/v2/models/bad/ready")
    assert ready.status_code == 503
