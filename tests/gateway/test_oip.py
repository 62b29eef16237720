"""The Open Inference Protocol, driven by the unmodified tritonclient against a real gateway
serving two versions of a ResNet-18 (different weights, so answers tell them apart)."""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from nuvem.models.labels import imagenet_labels
from nuvem.models.preprocess import preprocess
from support import Running, jpeg, reference_model, serving, triton_call, weights_file

pytestmark = pytest.mark.anyio
T = TypeVar("T")


@dataclass
class Served:
    gateway: Running
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def triton(self, call: Callable[[triton.InferenceServerClient], T]) -> T:
        return await triton_call(self.gateway.url, call)


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    root = tmp_path_factory.mktemp("oip")
    async with serving(root, root / "state", client_timeout=60.0) as gateway:
        await gateway.deploy(
            f"""
            functions:
              resnet-v1:
                model: {{arch: resnet18, weights: {weights_file(seed=0)}, name: resnet,
                         version: 1}}
                batching: {{max_batch_size: 4, max_delay_ms: 2}}
              resnet-v2:
                model: {{arch: resnet18, weights: {weights_file(seed=1)}, name: resnet,
                         version: 2}}
            """,
            within=120,
            started=True,
        )
        yield Served(gateway, await gateway.api_key("resnet-v1", "resnet-v2"))


def image_batch(*seeds: int) -> np.ndarray:
    return np.stack([preprocess(jpeg(seed=s)).numpy() for s in seeds])


def expected_logits(pixels: np.ndarray, seed: int) -> np.ndarray:
    with torch.inference_mode():
        logits: np.ndarray = reference_model(seed=seed)(torch.from_numpy(pixels)).numpy()
    return logits


def fp32_input(pixels: np.ndarray, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    return tensor


def image_input(*images: bytes) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    return tensor


async def test_health_and_server_metadata(served: Served) -> None:
    assert await served.triton(lambda c: c.is_server_live())
    assert await served.triton(lambda c: c.is_server_ready())
    assert await served.triton(lambda c: c.is_model_ready("resnet", "1"))
    metadata = await served.triton(lambda c: c.get_server_metadata())
    assert metadata["name"] == "nuvem"
    assert {"binary_tensor_data", "classification"} <= set(metadata["extensions"])
    async with httpx.AsyncClient(base_url=served.gateway.url) as anonymous:
        ready = await anonymous.get("/v2/health/ready")
        unknown = await anonymous.get("/v2/models/nope/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert unknown.status_code == 404
    assert "models: resnet" in unknown.json()["error"]


async def test_model_metadata_lists_versions_inputs_and_outputs(served: Served) -> None:
    metadata = await served.triton(lambda c: c.get_model_metadata("resnet", headers=served.headers))
    assert metadata["name"] == "resnet"
    assert metadata["versions"] == ["1", "2"]
    assert metadata["platform"] == "pytorch_libtorch"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert metadata["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 1000]}]


async def test_binary_tensors_reach_the_version_asked_for(served: Served) -> None:
    pixels = image_batch(1, 2)

    def infer(version: str) -> Any:
        return lambda c: c.infer(
            "resnet",
            [fp32_input(pixels)],
            model_version=version,
            outputs=[triton.InferRequestedOutput("output", binary_data=True)],
            request_id="req-7",
            headers=served.headers,
        )

    first = await served.triton(infer("1"))
    default = await served.triton(infer(""))
    np.testing.assert_allclose(first.as_numpy("output"), expected_logits(pixels, 0), atol=1e-4)
    # No version asked: the highest, 2, which has other weights.
    np.testing.assert_allclose(default.as_numpy("output"), expected_logits(pixels, 1), atol=1e-4)
    response = first.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "resnet",
        "1",
        "req-7",
    )
    assert default.get_response()["model_version"] == "2"


async def test_json_tensors_in_and_out(served: Served) -> None:
    pixels = image_batch(3)
    result = await served.triton(
        lambda c: c.infer(
            "resnet",
            [fp32_input(pixels, binary=False)],
            model_version="1",
            outputs=[triton.InferRequestedOutput("output", binary_data=False)],
            headers=served.headers,
        )
    )
    output = result.get_output("output")
    assert "data" in output
    assert output["shape"] == [1, 1000]
    assert result.get_response()["id"]  # one is made up when the request has none
    np.testing.assert_allclose(result.as_numpy("output"), expected_logits(pixels, 0), atol=1e-4)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
async def test_compressed_requests_and_responses(served: Served, algorithm: str) -> None:
    pixels = image_batch(4)
    result = await served.triton(
        lambda c: c.infer(
            "resnet",
            [fp32_input(pixels)],
            model_version="1",
            headers=served.headers,
            request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )
    )
    np.testing.assert_allclose(result.as_numpy("output"), expected_logits(pixels, 0), atol=1e-4)


async def test_classification_agrees_with_torchserve(served: Served) -> None:
    images = [jpeg(seed=5), jpeg(seed=6, width=200, height=300)]
    result = await served.triton(
        lambda c: c.infer(
            "resnet",
            [image_input(*images)],
            model_version="1",
            outputs=[triton.InferRequestedOutput("output", class_count=5)],
            headers=served.headers,
        )
    )
    classes = result.as_numpy("output")
    assert classes.shape == (2, 5)
    async with httpx.AsyncClient(base_url=served.gateway.url, headers=served.headers) as client:
        answers = [
            (await client.post("/predictions/resnet/1", content=image)).json() for image in images
        ]
    logits = expected_logits(image_batch(5, 6)[:1], 0)[0]
    names = imagenet_labels()
    for row, answer in zip(classes, answers, strict=True):
        parsed = [entry.decode().split(":", 2) for entry in row]
        # Same classes in the same order; TorchServe spells labels with underscores.
        assert [label.replace(" ", "_") for _, _, label in parsed] == list(answer)
        assert all(names[int(index)] == label for _, index, label in parsed)
    # Triton's score is the output's value (here the logit), printed with six decimals.
    score, index, _ = classes[0][0].decode().split(":", 2)
    assert float(score) == pytest.approx(float(logits[int(index)]), abs=1e-4)
    assert len(score.split(".")[1]) == 6


async def test_errors_are_json_with_the_right_status(served: Served) -> None:
    url = served.gateway.url
    async with httpx.AsyncClient(base_url=url, headers=served.headers) as client:
        shape = await client.post(
            "/v2/models/resnet/infer",
            json={
                "inputs": [
                    {"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
                ]
            },
        )
        count = await client.post(
            "/v2/models/resnet/infer",
            json={"inputs": [{"name": "input", "shape": [2], "datatype": "FP32", "data": [1]}]},
        )
        missing = await client.post("/v2/models/resnet/versions/9/infer", json={"inputs": []})
        bad_image = await client.post(
            "/v2/models/resnet/infer",
            json={"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["x"]}]},
        )
    assert shape.status_code == 400
    assert "input 'input' has shape [1, 3]" in shape.json()["error"]
    assert count.status_code == 400
    assert "needs 2 values, data has 1" in count.json()["error"]
    assert missing.status_code == 404
    assert "versions: 1, 2" in missing.json()["error"]
    assert bad_image.status_code == 400
    assert "not an image" in bad_image.json()["error"]
    # Refusals speak of the model the caller named, and of the function behind it.
    only_v1 = await served.gateway.api_key("resnet-v1")
    async with httpx.AsyncClient(base_url=url) as anonymous:
        unauthorised = await anonymous.post("/v2/models/resnet/infer", json={"inputs": []})
        unknown = await anonymous.post("/v2/models/nope/infer", json={"inputs": []})
        unknown_version = await anonymous.get("/v2/models/resnet/versions/9")
        forbidden = await anonymous.post(
            "/v2/models/resnet/infer",
            json={"inputs": []},
            headers={"Authorization": f"Bearer {only_v1}"},
        )
    assert unauthorised.status_code == 401
    assert (
        "model 'resnet' version 2 (served by function 'resnet-v2')"
        in (unauthorised.json()["error"])
    )
    # Without a key nothing tells which models or versions exist.
    assert (unknown.status_code, unknown_version.status_code) == (401, 401)
    assert "resnet" not in unknown.json()["error"]
    assert "versions" not in unknown_version.json()["error"]
    assert forbidden.status_code == 403
    assert (
        "may not invoke model 'resnet' version 2 (served by function 'resnet-v2')"
        in (forbidden.json()["error"])
    )
    with pytest.raises(InferenceServerException) as caught:
        await served.triton(lambda c: c.infer("resnet", [fp32_input(image_batch(1))]))
    assert caught.value.status() == "401"
    assert "API key" in caught.value.message()


def _bomb(inflated: int) -> bytes:
    """A gzip body of `inflated` zero bytes, a few hundred KiB on the wire."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(2**20)
    parts = [packer.compress(zeros) for _ in range(inflated // 2**20)]
    return b"".join(parts) + packer.flush()


async def test_gzip_bomb_is_refused_and_the_gateway_serves_on(served: Served) -> None:
    bomb = _bomb(256 * 2**20)  # 256 MiB inflated, past the 64 MiB body limit
    assert len(bomb) < 2**20
    host, port = served.gateway.url.removeprefix("http://").split(":")

    def send() -> bytes:
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(
                b"POST /v2/models/resnet/versions/1/infer HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {served.key}\r\n".encode()
                + b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
                + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
                + bomb
            )
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    answer = await asyncio.to_thread(send)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"NUVEM_MAX_BODY" in answer
    pixels = image_batch(4)
    result = await served.triton(
        lambda c: c.infer("resnet", [fp32_input(pixels)], model_version="1", headers=served.headers)
    )
    np.testing.assert_allclose(result.as_numpy("output"), expected_logits(pixels, 0), atol=1e-4)
