"""The engine for eager PyTorch, torch.export and TorchScript modules."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nuvem.errors import ModelError
from nuvem.stack.model import TensorSpec


class TorchEngine:
    """An nn.Module (eager) or a TorchScript module; inputs are passed in declared order."""

    def __init__(
        self,
        module: nn.Module,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        platform: str = "pytorch_libtorch",
        channels_last: bool = False,
    ) -> None:
        # A torch.export module keeps the mode it was exported in and refuses eval().
        with contextlib.suppress(NotImplementedError):
            module = module.eval()
        # Convolutions run markedly faster on CPU with channels-last tensors (oneDNN's native
        # layout): 1.3 to 1.8 times for ResNet-18 here. The answers agree to float rounding.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.module = (
            module.to(memory_format=self.memory_format)  # type: ignore[call-overload]
            if channels_last
            else module
        )
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.platform = platform

    def run(self, feed: dict[str, np.ndarray], threads: int | None = None) -> dict[str, np.ndarray]:
        # torch's intra-op pool takes a new size in about a microsecond: set per call.
        if threads is not None and threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        with torch.inference_mode():
            result = self.module(*(self._tensor(feed[spec.name]) for spec in self.inputs))
        values = result if isinstance(result, tuple | list) else (result,)
        if len(values) != len(self.outputs):
            raise ModelError(
                f"the model returned {len(values)} outputs and {len(self.outputs)} are declared",
                "list every output the model returns under model.outputs",
            )
        return {
            spec.name: value.detach().cpu().numpy()
            for spec, value in zip(self.outputs, values, strict=True)
        }

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        if tensor.dim() == 4 and self.memory_format is torch.channels_last:
            return tensor.contiguous(memory_format=torch.channels_last)
        return tensor
