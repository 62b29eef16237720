"""The model of the chaos run (`bench/chaos.py --models`): a small real torch model served by
nuvem's model support, and the check of every answer it gives.

`y = x W^T + b` (a `torch.nn.Linear` of 8 inputs and 4 outputs, its weights fixed by a seed),
traced to TorchScript in a file of this run: nothing is downloaded. Each call sends its own
random `x` to the Open Inference Protocol's `/v2/models/model/infer` and its answer must be
that `y`, so a wrong answer is caught, not only a failed one. A model this small costs its
replica a few microseconds of torch per call: the replica still loads torch and runs the
model handler's batching thread, which is what a fault hits, without drowning the 2-core
machine's other work (ResNet-18 takes tens of ms of CPU per image).
"""

from __future__ import annotations

import dataclasses
import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np

NAME = "model"
INPUTS, OUTPUTS = 8, 4
TOLERANCE = 1e-4  # float32 sums of 8 products


@dataclasses.dataclass(frozen=True, slots=True)
class TinyModel:
    path: Path
    weight: np.ndarray[Any, np.dtype[np.float32]]  # (OUTPUTS, INPUTS)
    bias: np.ndarray[Any, np.dtype[np.float32]]  # (OUTPUTS,)

    def spec(self) -> dict[str, Any]:
        """The function's entry in the stack: two replicas of one thread, retried on the
        other replica when one dies mid-call (a prediction has no side effect)."""
        return {
            "model": {
                "path": str(self.path),
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, INPUTS]}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, OUTPUTS]}],
                "threads": 1,
            },
            "idempotent": True,
            "scaling": {"min": 2, "max": 2},
            "max_inflight": 32,
        }

    def request(self, rng: random.Random) -> tuple[bytes, np.ndarray[Any, np.dtype[np.float32]]]:
        """A call's JSON body, and the `y` its answer must carry."""
        x = np.array([rng.uniform(-1.0, 1.0) for _ in range(INPUTS)], dtype=np.float32)
        body = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, INPUTS], "data": x.tolist()}]
        }
        return json.dumps(body).encode(), self.weight @ x + self.bias

    def answers(self, content: bytes, expected: np.ndarray[Any, np.dtype[np.float32]]) -> bool:
        """Whether an answer's body carries `expected` as its output `y`."""
        try:
            outputs = json.loads(content)["outputs"]
            found = next(o for o in outputs if o["name"] == "y")
            y = np.asarray(found["data"], dtype=np.float32).ravel()
        except (ValueError, KeyError, TypeError, StopIteration):
            return False
        return y.shape == expected.shape and bool(np.allclose(y, expected, atol=TOLERANCE))


def make(folder: Path) -> TinyModel:
    """Trace the model into `folder`; torch is imported here only, before the load starts."""
    import torch

    torch.manual_seed(0)
    linear = torch.nn.Linear(INPUTS, OUTPUTS).eval()
    path = folder / "tiny.pt"
    with warnings.catch_warnings():
        # TorchScript is deprecated, and still what many have; nuvem serves it.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(linear, torch.zeros(1, INPUTS))  # type: ignore[no-untyped-call]
        torch.jit.save(traced, str(path))
    weight = linear.weight.detach().numpy().astype(np.float32)
    bias = linear.bias.detach().numpy().astype(np.float32)
    return TinyModel(path, weight, bias)
