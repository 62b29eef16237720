"""State-dict layouts must equal torchvision's, key for key and shape for shape, so that
torchvision's published weights load as is. torchvision cannot be installed here, so the
expected layouts are written out below from torchvision's definitions."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nuvem.errors import ModelError  # noqa: E402
from nuvem.models import architectures  # noqa: E402


def meta_state(arch: str, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    # Shapes without memory or initialisation cost.
    with torch.device("meta"):
        model = architectures.build(arch, num_classes)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def meta_parameter_count(arch: str) -> tuple[int, int]:
    with torch.device("meta"):
        model = architectures.build(arch)
    params = list(model.parameters())
    return len(params), sum(p.numel() for p in params)


# resnet18: conv1+bn1 (1+5) + 8 blocks x (conv, bn, conv, bn = 12) + 3 downsamples x (conv, bn
# = 6) + fc (2) = 122 entries, of which 62 are parameters; 11,689,512 weights in all.
# densenet161: conv0+norm0 (6) + 78 dense layers x 12 + 3 transitions x 6 + norm5 (5)
# + classifier (2) = 967 entries, of which 484 are parameters; 28,681,000 weights.
COUNTS = {
    "resnet18": (122, 62, 11_689_512),
    "densenet161": (967, 484, 28_681_000),
}

RESNET18_SHAPES = {
    "conv1.weight": (64, 3, 7, 7),
    "bn1.weight": (64,),
    "bn1.num_batches_tracked": (),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer1.1.bn2.running_mean": (64,),
    "layer2.0.conv1.weight": (128, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.running_var": (128,),
    "layer3.1.conv2.weight": (256, 256, 3, 3),
    "layer4.0.downsample.0.weight": (512, 256, 1, 1),
    "layer4.1.bn2.running_var": (512,),
    "fc.weight": (1000, 512),
    "fc.bias": (1000,),
}

# Channels into each dense layer: block start + (layer - 1) * 48; block starts are 96, 192,
# 384 and 1056 (each transition halves the channels), and the network ends with 2208.
DENSENET161_SHAPES = {
    "features.conv0.weight": (96, 3, 7, 7),
    "features.norm0.running_mean": (96,),
    "features.denseblock1.denselayer1.norm1.weight": (96,),
    "features.denseblock1.denselayer1.conv1.weight": (192, 96, 1, 1),
    "features.denseblock1.denselayer1.norm2.bias": (192,),
    "features.denseblock1.denselayer1.conv2.weight": (48, 192, 3, 3),
    "features.denseblock1.denselayer6.norm1.running_var": (336,),
    "features.transition1.norm.weight": (384,),
    "features.transition1.conv.weight": (192, 384, 1, 1),
    "features.denseblock2.denselayer12.norm1.weight": (720,),
    "features.transition2.conv.weight": (384, 768, 1, 1),
    "features.denseblock3.denselayer36.conv1.weight": (192, 2064, 1, 1),
    "features.transition3.conv.weight": (1056, 2112, 1, 1),
    "features.denseblock4.denselayer24.norm1.num_batches_tracked": (),
    "features.denseblock4.denselayer24.norm1.weight": (2160,),
    "features.denseblock4.denselayer24.conv2.weight": (48, 192, 3, 3),
    "features.norm5.weight": (2208,),
    "classifier.weight": (1000, 2208),
    "classifier.bias": (1000,),
}


def test_registry() -> None:
    assert architectures.names() == ("densenet161", "resnet18")
    assert architectures.get("resnet18").weights_url.endswith("/resnet18-f37072fd.pth")
    assert architectures.get("densenet161").weights_url.endswith("/densenet161-8d451a50.pth")


def test_unknown_architecture_names_the_choices() -> None:
    with pytest.raises(ModelError, match="'resnet50'") as info:
        architectures.build("resnet50")
    assert "densenet161, resnet18" in str(info.value)


@pytest.mark.parametrize("arch", ["resnet18", "densenet161"])
def test_counts(arch: str) -> None:
    entries, tensors, weights = COUNTS[arch]
    assert len(meta_state(arch)) == entries
    assert meta_parameter_count(arch) == (tensors, weights)


@pytest.mark.parametrize(
    ("arch", "expected"), [("resnet18", RESNET18_SHAPES), ("densenet161", DENSENET161_SHAPES)]
)
def test_key_names_and_shapes(arch: str, expected: dict[str, tuple[int, ...]]) -> None:
    state = meta_state(arch)
    assert {key: state.get(key) for key in expected} == expected


def test_resnet18_layout_details() -> None:
    keys = list(meta_state("resnet18"))
    assert keys[:6] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
    ]
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    # Only the first block of layers 2-4 changes shape, so only those have a downsample.
    downsampled = {key.split(".downsample")[0] for key in keys if ".downsample." in key}
    assert downsampled == {"layer2.0", "layer3.0", "layer4.0"}


def test_densenet161_layout_details() -> None:
    keys = list(meta_state("densenet161"))
    assert keys[0] == "features.conv0.weight"
    assert keys[-2:] == ["classifier.weight", "classifier.bias"]
    layers = {key.rsplit(".", 2)[0] for key in keys if ".denselayer" in key}
    per_block = [sum(f"denseblock{b}." in layer for layer in layers) for b in (1, 2, 3, 4)]
    assert per_block == [6, 12, 36, 24]
    assert not any(".norm." in key and "denselayer" in key for key in keys)


def test_num_classes_changes_only_the_head() -> None:
    base, ten = meta_state("resnet18"), meta_state("resnet18", num_classes=10)
    assert base.keys() == ten.keys()
    assert {k for k in base if base[k] != ten[k]} == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize("arch", ["resnet18", "densenet161"])
def test_forward_gives_logits(arch: str) -> None:
    torch.manual_seed(0)
    model = architectures.build(arch).eval()
    # A small input keeps DenseNet-161 on CPU quick; both networks pool it down to 2x2.
    with torch.inference_mode():
        logits = model(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()
