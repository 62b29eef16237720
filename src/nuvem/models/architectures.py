"""The registry of built-in architectures. Importable without torch, so a stack file can be
validated against `names()` on a machine that does not have the models extra."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from nuvem.errors import ModelError

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True, slots=True)
class Architecture:
    name: str
    # torchvision's ImageNet weights; the file name carries the first hex digits of its sha256,
    # which `weights.fetch` verifies.
    weights_url: str
    _builder: Callable[[int], nn.Module]

    def build(self, num_classes: int = 1000) -> nn.Module:
        return self._builder(num_classes)


def _resnet18(num_classes: int) -> nn.Module:
    from nuvem.models.resnet import resnet18

    return resnet18(num_classes=num_classes)


def _densenet161(num_classes: int) -> nn.Module:
    from nuvem.models.densenet import densenet161

    return densenet161(num_classes=num_classes)


ARCHITECTURES: Mapping[str, Architecture] = MappingProxyType(
    {
        "densenet161": Architecture(
            "densenet161",
            "https://download.pytorch.org/models/densenet161-8d451a50.pth",
            _densenet161,
        ),
        "resnet18": Architecture(
            "resnet18", "https://download.pytorch.org/models/resnet18-f37072fd.pth", _resnet18
        ),
    }
)


def names() -> tuple[str, ...]:
    return tuple(sorted(ARCHITECTURES))


def get(arch: str) -> Architecture:
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise ModelError(
            f"unknown architecture {arch!r}", hint=f"choose one of: {', '.join(names())}"
        ) from None


def build(arch: str, num_classes: int = 1000) -> nn.Module:
    """A freshly initialised model (in training mode, as torchvision returns it: call `.eval()`
    before serving) whose state dict matches torchvision's model of the same name."""
    return get(arch).build(num_classes)
