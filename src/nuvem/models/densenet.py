"""DenseNet-161 in plain PyTorch, laid out so that its state dict is torchvision's
``densenet161()``, and able to load the published checkpoints that predate that layout."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping
from typing import Any, TypeVar

import torch
import torch.nn.functional as F  # noqa: N812  (the conventional alias)
from torch import nn

_T = TypeVar("_T")

# Module names could once contain dots, so torchvision's original DenseNet checkpoints (among
# them densenet161-8d451a50.pth, which TorchServe's example serves) store
# `...denselayer1.norm.1.weight` where today's layout has `...denselayer1.norm1.weight`.
# torchvision renames them with this pattern in its `_load_state_dict`; so do we.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _modern_key(key: str) -> str:
    match = _LEGACY_KEY.match(key)
    return match.group(1) + match.group(2) if match else key


def remap_legacy_keys(state_dict: Mapping[str, _T]) -> dict[str, _T]:
    """Rename torchvision's pre-0.4 DenseNet keys (`norm.1`) to today's (`norm1`); other keys
    pass through unchanged, so this is safe to apply to any checkpoint."""
    return {_modern_key(key): value for key, value in state_dict.items()}


class _DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(
            num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False
        )
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        bottleneck = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        out: torch.Tensor = self.conv2(self.relu2(self.norm2(bottleneck)))
        return out


class _DenseBlock(nn.ModuleDict):
    def __init__(
        self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(num_input_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module(
            "conv",
            nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False),
        )
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    (
                        "conv0",
                        nn.Conv2d(
                            3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False
                        ),
                    ),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, num_features, bn_size, growth_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(
                    f"transition{i + 1}", _Transition(num_features, num_features // 2)
                )
                num_features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)

        # torchvision's initialisation, so an untrained model behaves like theirs.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

        # Runs before any submodule reads the dict, so even a plain `load_state_dict` accepts
        # the legacy checkpoints.
        # (torch leaves this registration method unannotated.)
        self.register_load_state_dict_pre_hook(_remap_before_load)  # type: ignore[no-untyped-call]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        logits: torch.Tensor = self.classifier(out)
        return logits


def _remap_before_load(
    module: nn.Module,
    state_dict: MutableMapping[str, Any],
    prefix: str,
    *_: Any,
) -> None:
    # `load_state_dict` hands every module the same (copied) dict, so renaming in place here is
    # what the submodules see, and the caller's dict is untouched.
    for key in [k for k in state_dict if k.startswith(prefix)]:
        new_key = _modern_key(key)
        if new_key != key:
            state_dict[new_key] = state_dict.pop(key)


def densenet161(num_classes: int = 1000) -> DenseNet:
    return DenseNet(
        growth_rate=48,
        block_config=(6, 12, 36, 24),
        num_init_features=96,
        bn_size=4,
        num_classes=num_classes,
    )
