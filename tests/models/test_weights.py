"""Reading, checking and loading weight files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

import torch

from nuvem.errors import ModelError
from nuvem.models import architectures
from nuvem.models.densenet import DenseNet, remap_legacy_keys
from nuvem.models.weights import (
    describe,
    identify,
    load_weights,
    read_state_dict,
    save_weights,
)

LEGACY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.")


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    # Fresh models share their BatchNorm statistics (zeros and ones); randomise every tensor so
    # that a round trip proves each one was carried.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=generator))
            else:
                value.fill_(int(torch.randint(1, 1000, (), generator=generator)))
    return model


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def small_densenet() -> DenseNet:
    # Same module structure as DenseNet-161, a thousandth of the weights.
    return DenseNet(growth_rate=4, block_config=(2, 2, 2, 2), num_init_features=8, num_classes=5)


def meta_model(arch: str, num_classes: int = 1000) -> torch.nn.Module:
    with torch.device("meta"):
        return architectures.build(arch, num_classes)


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    return randomised(architectures.build("resnet18"))


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".safetensors"])
def test_round_trip(resnet: torch.nn.Module, tmp_path: Path, suffix: str) -> None:
    path = save_weights(resnet, tmp_path / f"weights{suffix}")
    loaded = load_weights(architectures.build("resnet18"), path)
    assert_same_state(resnet, loaded)


def test_training_checkpoint_and_data_parallel_keys(tmp_path: Path) -> None:
    model = randomised(small_densenet())
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": wrapped, "epoch": 3}, tmp_path / "checkpoint.pth")
    assert_same_state(model, load_weights(small_densenet(), tmp_path / "checkpoint.pth"))


def test_legacy_densenet_keys_load(tmp_path: Path) -> None:
    # torchvision's densenet161-8d451a50.pth predates num_batches_tracked and spells
    # `denselayer1.norm1` as `denselayer1.norm.1`.
    model = randomised(small_densenet())
    legacy = {
        LEGACY.sub(r"\1.\2.", key): value
        for key, value in model.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert "features.denseblock1.denselayer1.conv.2.weight" in legacy
    torch.save(legacy, tmp_path / "densenet-legacy.pth")

    loaded = load_weights(small_densenet(), tmp_path / "densenet-legacy.pth")
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key

    # Plain torch loading accepts them too, as torchvision's densenet161(weights=...) does.
    plain = small_densenet()
    plain.load_state_dict(legacy)
    norm1 = "features.denseblock1.denselayer1.norm1.weight"
    assert torch.equal(plain.get_parameter(norm1), model.get_parameter(norm1))


def test_remap_legacy_keys_follows_torchvision() -> None:
    state = {
        "features.denseblock4.denselayer24.norm.2.running_var": 1,
        "features.denseblock1.denselayer1.conv.1.weight": 2,
        "features.transition1.norm.weight": 3,  # transitions never had the dotted names
        "features.norm5.bias": 4,
        "layer1.0.bn1.weight": 5,
    }
    assert remap_legacy_keys(state) == {
        "features.denseblock4.denselayer24.norm2.running_var": 1,
        "features.denseblock1.denselayer1.conv1.weight": 2,
        "features.transition1.norm.weight": 3,
        "features.norm5.bias": 4,
        "layer1.0.bn1.weight": 5,
    }


def test_identify_and_describe(resnet: torch.nn.Module) -> None:
    state = resnet.state_dict()
    assert identify(state) == "resnet18"
    assert describe(state) == "a resnet18 checkpoint"
    assert identify(meta_model("densenet161").state_dict()) == "densenet161"
    assert (
        describe(meta_model("resnet18", 10).state_dict()) == "a resnet18 checkpoint for 10 classes"
    )
    assert identify({"encoder.weight": torch.zeros(1)}) is None
    assert "no built-in architecture" in describe({"encoder.weight": torch.zeros(1)})


def test_wrong_architecture_names_keys_and_guess(resnet: torch.nn.Module, tmp_path: Path) -> None:
    path = save_weights(resnet, tmp_path / "resnet18.safetensors")
    with pytest.raises(ModelError) as info:
        load_weights(meta_model("densenet161"), path)
    message = str(info.value)
    assert str(path) in message
    assert "806 missing keys (features.conv0.weight, " in message
    assert "122 unexpected keys (bn1.bias, " in message
    assert "the file looks like a resnet18 checkpoint; the model is densenet161" in message


def test_other_class_count_suggests_num_classes(tmp_path: Path) -> None:
    ten = architectures.build("resnet18", num_classes=10)
    path = save_weights(ten, tmp_path / "finetuned.pth")
    model = architectures.build("resnet18")
    before = model.get_parameter("conv1.weight").clone()
    with pytest.raises(
        ModelError, match=r"fc\.weight: file \[10, 512\], model \[1000, 512\]"
    ) as info:
        load_weights(model, path)
    assert "build it with num_classes=10" in str(info.value)
    assert torch.equal(model.get_parameter("conv1.weight"), before), (
        "a failed load must leave the model alone"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"weights file not found: .*nothing\.pth"):
        load_weights(small_densenet(), tmp_path / "nothing.pth")


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "weights.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"unsupported weights file type '\.onnx'"):
        read_state_dict(tmp_path / "weights.onnx")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_corrupt_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(b"\x80\x02not really weights" * 10)
    with pytest.raises(ModelError, match="cannot read"):
        read_state_dict(path)


def test_pickled_model_is_refused(tmp_path: Path) -> None:
    torch.save(small_densenet(), tmp_path / "whole-model.pth")
    with pytest.raises(ModelError, match="weights-only") as info:
        read_state_dict(tmp_path / "whole-model.pth")
    assert "state_dict()" in info.value.hint


def test_not_a_state_dict(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2), "epoch": 3}, tmp_path / "mixed.pth")
    with pytest.raises(ModelError, match="entry 'epoch' is a int"):
        read_state_dict(tmp_path / "mixed.pth")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(ModelError, match="holds a list, not a state dict"):
        read_state_dict(tmp_path / "list.pth")


def test_a_meta_built_model_takes_the_files_tensors(tmp_path: Path) -> None:
    reference = randomised(architectures.build("resnet18")).eval()
    path = save_weights(reference, tmp_path / "r.safetensors")
    with torch.device("meta"):
        skeleton = architectures.build("resnet18")
    loaded = load_weights(skeleton, path, assign=True).eval()
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert not any(t.is_meta for t in tensors)
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(image), reference(image))
