"""Model test material made on the spot: randomly initialised weights and small images.

Nothing is downloaded: weights are a freshly initialised model saved to a temporary folder
(once per test session and seed), and images are drawn with Pillow.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from nuvem.models import architectures, weights
from nuvem.platform import Platform
from support import deploy_stack, serving

_FOLDER = Path(tempfile.mkdtemp(prefix="nuvem-test-models-"))
atexit.register(shutil.rmtree, _FOLDER, True)


@functools.cache
def weights_file(arch: str = "resnet18", seed: int = 0) -> Path:
    """A weights file of `arch`, randomly initialised from `seed`."""
    torch.manual_seed(seed)
    model = architectures.build(arch)
    # Random BatchNorm statistics make the logits of different images differ clearly.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.running_var, 0.5, 1.5)
            torch.nn.init.normal_(module.running_mean, 0.0, 0.1)
    return weights.save_weights(model, _FOLDER / f"{arch}-seed{seed}.safetensors")


def reference_model(arch: str = "resnet18", seed: int = 0) -> torch.nn.Module:
    """The same model as `weights_file(arch, seed)`, in this process, for expected outputs."""
    return weights.load_weights(architectures.build(arch), weights_file(arch, seed)).eval()


def jpeg(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    """A small JPEG with smooth random colours (random noise would compress badly)."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 256, size=(2, 2, 3)).astype(np.float32)
    ys = np.linspace(0, 1, height)[:, None, None]
    xs = np.linspace(0, 1, width)[None, :, None]
    top = corners[0, 0] * (1 - xs) + corners[0, 1] * xs
    bottom = corners[1, 0] * (1 - xs) + corners[1, 1] * xs
    pixels = (top * (1 - ys) + bottom * ys).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@dataclass
class ModelGateway:
    """A real gateway (uvicorn on a free port, real worker processes) for model tests."""

    platform: Platform
    url: str
    admin: httpx.AsyncClient
    root: Path

    async def deploy(self, stack_yaml: str) -> None:
        for deployment in await deploy_stack(self.platform, self.root, stack_yaml, within=120):
            assert deployment.last_error is None, deployment.last_error

    async def api_key(self, *functions: str) -> str:
        response = await self.admin.post(
            "/system/keys", json={"name": "test", "functions": list(functions)}
        )
        response.raise_for_status()
        key: str = response.json()["key"]
        return key


@contextlib.asynccontextmanager
async def model_gateway(root: Path) -> AsyncIterator[ModelGateway]:
    """A gateway whose state lives under `root` (shared by a module's tests: models load
    slowly, so each module deploys them once)."""
    async with serving(root / "state", client_timeout=60.0) as (platform, url, admin):
        yield ModelGateway(platform, url, admin, root)
