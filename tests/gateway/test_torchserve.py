"""TorchServe's inference API against a real gateway serving ResNet-18, with batching."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from nuvem.models.labels import imagenet_labels
from nuvem.models.preprocess import postprocess, preprocess
from support import Running, jpeg, reference_model, serving, weights_file

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    root = tmp_path_factory.mktemp("torchserve")
    async with serving(root, root / "state", client_timeout=60.0) as gateway:
        await gateway.deploy(
            f"""
            functions:
              resnet:
                model: {{arch: resnet18, weights: {weights_file()}}}
                batching: {{max_batch_size: 8, max_delay_ms: 1000}}
            """,
            within=120,
            started=True,
        )
        yield gateway


@pytest.fixture(scope="module")
async def client(served: Running) -> AsyncIterator[httpx.AsyncClient]:
    key = await served.api_key("resnet")
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=60) as c:
        yield c


def expected_top5(image: bytes) -> dict[str, float]:
    logits = reference_model()(preprocess(image).unsqueeze(0))
    names = imagenet_labels(underscores=True)
    return {names[p.index]: p.probability for p in postprocess(logits, 5)}


async def test_raw_image_answers_top5_labels_as_torchserve(client: httpx.AsyncClient) -> None:
    image = jpeg(seed=1)
    response = await client.post("/predictions/resnet", content=image)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = expected_top5(image)
    assert list(answer) == list(expected)
    assert answer == pytest.approx(expected, abs=1e-5)


async def test_multipart_data_field_gives_the_same_answer(client: httpx.AsyncClient) -> None:
    image = jpeg(seed=2)
    raw = await client.post("/predictions/resnet", content=image)
    multipart = await client.post(
        "/predictions/resnet/1", files={"data": ("kitten.jpg", image, "image/jpeg")}
    )
    assert multipart.status_code == 200, multipart.text
    assert multipart.json() == raw.json()
    assert multipart.headers["x-model-version"] == "1"


async def test_concurrent_calls_run_as_one_batch_and_map_back(client: httpx.AsyncClient) -> None:
    images = [jpeg(seed=10 + i) for i in range(6)]
    responses = await asyncio.gather(
        *(client.post("/predictions/resnet", content=image) for image in images)
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert max(int(r.headers["x-batch-size"]) for r in responses) > 1
    for image, response in zip(images, responses, strict=True):
        assert list(response.json()) == list(expected_top5(image))


async def test_a_bad_image_fails_only_its_own_call(client: httpx.AsyncClient) -> None:
    good = jpeg(seed=3)
    truncated = good[: len(good) // 2]
    responses = await asyncio.gather(
        client.post("/predictions/resnet", content=good),
        client.post("/predictions/resnet", content=b"this is not an image"),
        client.post("/predictions/resnet", content=truncated),
        client.post("/predictions/resnet", content=good),
    )
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 400, 400, 200], [r.text for r in responses]
    assert "not an image" in responses[1].json()["error"]
    assert "truncated" in responses[2].json()["error"]
    assert max(int(r.headers["x-batch-size"]) for r in responses if r.status_code == 200) > 1


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims the given size; its pixels never follow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


async def test_enormous_dimensions_are_refused_before_decoding(client: httpx.AsyncClient) -> None:
    response = await client.post("/predictions/resnet", content=png_header(20_000, 20_000))
    assert response.status_code == 400
    assert "too large" in response.json()["error"]


async def test_errors_name_the_problem(served: Running, client: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=served.url) as anonymous:
        unauthorised = await anonymous.post("/predictions/resnet", content=jpeg())
        unknown = await anonymous.post("/predictions/nope", content=jpeg())
        ping = await anonymous.get("/ping")
    assert unauthorised.status_code == 401
    # Nor does a caller without a key learn which models exist.
    assert unknown.status_code == 401
    assert "resnet" not in unknown.json()["error"]
    assert "API key" in unauthorised.json()["error"]
    assert ping.json() == {"status": "Healthy"}
    missing = await client.post("/predictions/nope", content=jpeg())
    assert missing.status_code == 404
    assert "resnet" in missing.json()["error"]
    version = await client.post("/predictions/resnet/7", content=jpeg())
    assert version.status_code == 404
    assert "versions: 1" in version.json()["error"]
    empty = await client.post("/predictions/resnet", content=b"")
    assert empty.status_code == 400
    assert "empty image" in empty.json()["error"]


async def test_deploying_a_model_without_its_weights_file_is_a_400(served: Running) -> None:
    spec = {
        "name": "ghost",
        "root": str(served.root),
        "model": {"arch": "resnet18", "weights": "/nowhere/resnet18.pth"},
    }
    response = await served.admin.post("/system/functions", json=spec)
    assert response.status_code == 400
    assert (
        "model.weights '/nowhere/resnet18.pth' is not a readable file" in response.json()["error"]
    )
    assert "ghost" not in served.platform.controller.deployments
