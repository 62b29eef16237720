"""Engines other than eager PyTorch, and models other than the built-ins: ResNet-18 on ONNX
Runtime (exported once, cached by the weights' digest), ONNX, torch.export and TorchScript
files of our own, and DenseNet-161; all through the real gateway and tritonclient."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton

from nuvem.models.labels import imagenet_labels
from nuvem.models.preprocess import postprocess, preprocess
from support import (
    ADMIN_PASSWORD,
    Running,
    jpeg,
    reference_model,
    serving,
    triton_call,
    weights_file,
)

pytestmark = pytest.mark.anyio


class Affine(torch.nn.Module):
    """y = x W + b, and its row sums: a model of our own with two outputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.linear(x)
        return y, y.sum(dim=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("engines")
    shutil.copy(weights_file(), root / "resnet18.safetensors")
    model = Affine().eval()
    example = torch.zeros(2, 4)
    with warnings.catch_warnings():
        # TorchScript and its ONNX exporter are deprecated, and still what many have.
        warnings.simplefilter("ignore", DeprecationWarning)
        # torch.jit.trace has no annotations.
        traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
        torch.jit.save(traced, str(root / "affine.pt"))
        batch = torch.export.Dim("batch")
        exported = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
        torch.export.save(exported, str(root / "affine.pt2"))
        torch.onnx.export(
            model,
            (example,),
            str(root / "affine.onnx"),
            input_names=["x"],
            output_names=["y", "total"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}, "total": {0: "batch"}},
            dynamo=False,
        )
    return root


@pytest.fixture(scope="module")
async def served(folder: Path) -> AsyncIterator[Running]:
    async with serving(folder, folder / "state", client_timeout=60.0) as gateway:
        await gateway.deploy(
            f"""
            functions:
              resnet-onnx:
                model: {{arch: resnet18, weights: resnet18.safetensors, engine: onnxruntime}}
                batching: {{max_batch_size: 4, max_delay_ms: 2}}
              affine-onnx:
                model: {{path: affine.onnx}}
              affine-script:
                model:
                  path: affine.pt
                  inputs: [{{name: x, datatype: FP32, shape: [-1, 4]}}]
                  outputs:
                    - {{name: y, datatype: FP32, shape: [-1, 3]}}
                    - {{name: total, datatype: FP32, shape: [-1]}}
              affine-export:
                model:
                  path: affine.pt2
                  inputs: [{{name: x, datatype: FP32, shape: [-1, 4]}}]
                  outputs:
                    - {{name: y, datatype: FP32, shape: [-1, 3]}}
                    - {{name: total, datatype: FP32, shape: [-1]}}
              densenet:
                model: {{arch: densenet161, weights: {weights_file("densenet161")}}}
            """,
            within=120,
            started=True,
        )
        yield gateway


def admin_headers() -> dict[str, str]:
    import base64

    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def onnx_exports(folder: Path) -> list[Path]:
    return list(folder.glob("resnet18-*.onnx"))


async def test_resnet_on_onnxruntime_matches_eager_pytorch(served: Running, folder: Path) -> None:
    exports = onnx_exports(folder)
    assert len(exports) == 1  # exported once, next to the weights, named by their digest
    pixels = np.stack([preprocess(jpeg(seed=s)).numpy() for s in (1, 2)])
    tensor = triton.InferInput("input", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    result = await triton_call(
        served.url, lambda c: c.infer("resnet-onnx", [tensor], headers=admin_headers())
    )
    with torch.inference_mode():
        expected = reference_model()(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(result.as_numpy("output"), expected, atol=2e-3)
    metadata = await triton_call(
        served.url, lambda c: c.get_model_metadata("resnet-onnx", headers=admin_headers())
    )
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"][0]["name"] == "input"


async def test_own_onnx_and_torchscript_models_describe_and_run(served: Running) -> None:
    x = np.array([[1, 2, 3, 4], [0, -1, 0.5, 2]], dtype=np.float32)
    with torch.inference_mode():
        y, total = (t.numpy() for t in Affine().eval()(torch.from_numpy(x)))
    for name, platform in (
        ("affine-onnx", "onnxruntime_onnx"),
        ("affine-script", "pytorch_libtorch"),
        ("affine-export", "pytorch_export"),
    ):

        def metadata_of(c: triton.InferenceServerClient, n: str = name) -> dict[str, Any]:
            found: dict[str, Any] = c.get_model_metadata(n, headers=admin_headers())
            return found

        metadata = await triton_call(served.url, metadata_of)
        assert metadata["platform"] == platform
        assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        assert [o["name"] for o in metadata["outputs"]] == ["y", "total"]
        tensor = triton.InferInput("x", [2, 4], "FP32")
        tensor.set_data_from_numpy(x, binary_data=False)

        def total_of(
            c: triton.InferenceServerClient, n: str = name, t: triton.InferInput = tensor
        ) -> triton.InferResult:
            wanted = [triton.InferRequestedOutput("total", binary_data=False)]
            return c.infer(n, [t], outputs=wanted, headers=admin_headers())

        result = await triton_call(served.url, total_of)
        np.testing.assert_allclose(result.as_numpy("total"), total, atol=1e-5)
        assert result.as_numpy("y") is None  # only what was asked for
    del y
    async with httpx.AsyncClient(base_url=served.url, headers=admin_headers()) as client:
        image = await client.post("/predictions/affine-onnx", content=jpeg())
    assert image.status_code == 400
    assert "takes tensors, not images" in image.json()["error"]


async def test_densenet_answers_alike_on_both_protocols(served: Running) -> None:
    image = jpeg(seed=9)
    async with httpx.AsyncClient(base_url=served.url, headers=admin_headers(), timeout=60) as c:
        answer = (await c.post("/predictions/densenet", content=image)).json()
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
    result = await triton_call(
        served.url,
        lambda c: c.infer(
            "densenet",
            [tensor],
            outputs=[
                triton.InferRequestedOutput("output", class_count=5),
            ],
            headers=admin_headers(),
        ),
    )
    labels = [entry.decode().split(":", 2)[2] for entry in result.as_numpy("output")[0]]
    assert [label.replace(" ", "_") for label in labels] == list(answer)
    with torch.inference_mode():
        logits = reference_model("densenet161")(preprocess(image).unsqueeze(0))
    names = imagenet_labels(underscores=True)
    expected = {names[p.index]: p.probability for p in postprocess(logits, 5)}
    assert answer == pytest.approx(expected, abs=1e-4)
