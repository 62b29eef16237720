"""`model:` and `batching:` in a stack file: defaults, and errors at deploy time."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from nuvem.errors import SpecError
from nuvem.models import architectures
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack, load_stack_text
from nuvem.stack.model import BUILTIN_ARCHS, MODEL_HANDLER, ModelSpec, intra_op_threads


def test_builtin_names_match_the_model_library() -> None:
    assert architectures.names() == BUILTIN_ARCHS


def test_a_model_needs_no_handler_and_paths_resolve_against_the_stack(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "r18.pth").write_bytes(b"x")
    stack = load_stack_text(
        "functions:\n"
        "  resnet:\n"
        "    model: {arch: resnet18, weights: weights/r18.pth, version: 2}\n"
        "    batching: {max_batch_size: 16}\n",
        "nuvem.yaml",
        tmp_path,
    )
    spec = stack.functions["resnet"]
    assert spec.handler == MODEL_HANDLER
    assert spec.model is not None
    assert spec.model.weights == str(tmp_path / "weights" / "r18.pth")
    assert spec.model.version == "2"
    # A replica holds a batch running and the next one filling.
    assert spec.max_inflight == 32


def test_missing_weights_fail_the_deploy_with_file_line_and_fix(tmp_path: Path) -> None:
    text = "functions:\n  resnet:\n    model:\n      arch: resnet18\n      weights: gone.pth\n"
    with pytest.raises(SpecError) as caught:
        load_stack_text(text, "nuvem.yaml", tmp_path)
    message = str(caught.value)
    assert "nuvem.yaml:5: functions.resnet.model.weights" in message
    assert str(tmp_path / "gone.pth") in message


def test_a_builtin_without_weights_is_an_error_never_a_random_model(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_stack_text("functions:\n  r:\n    model: {arch: resnet18}\n", "nuvem.yaml", tmp_path)
    assert "needs `weights`" in str(caught.value)
    assert "randomly initialised" in str(caught.value)


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ({"arch": "vgg16", "weights": "w.pth"}, "unknown architecture 'vgg16'"),
        ({"weights": "w.pth"}, "set either `arch`"),
        ({"arch": "resnet18", "weights": "w.pth", "path": "m.onnx"}, "set either `arch`"),
        ({"path": "m.pt"}, "model needs `inputs` and `outputs`"),
        ({"path": "m.pt2"}, "torch.export (.pt2) model needs `inputs`"),
        ({"path": "m.onnx", "version": "two words"}, "model version 'two words' is invalid"),
    ],
)
def test_model_spec_errors_say_what_to_write(model: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        ModelSpec.model_validate(model)


def test_url_weights_are_not_checked_on_disk() -> None:
    model = ModelSpec(arch="resnet18", weights="https://example.com/resnet18-f37072fd.pth")
    assert model.missing_file() is None
    assert model.local_files() == {}


def test_threads_default_to_the_cores_shared_among_the_replicas() -> None:
    model = ModelSpec(path="/m.onnx")
    cores = os.cpu_count() or 1
    assert intra_op_threads(model, 1.0, cpu_given=False) == cores
    assert intra_op_threads(model, 1.0, cpu_given=False, replicas=cores) == 1
    assert intra_op_threads(model, 1.5, cpu_given=True) == 2
    assert intra_op_threads(model.model_copy(update={"threads": 3}), 1.0, cpu_given=True) == 3


def test_batching_and_model_change_the_fingerprint() -> None:
    base = FunctionSpec.model_validate({"name": "m", "model": {"path": "/m.onnx"}})
    batched = FunctionSpec.model_validate(
        {"name": "m", "model": {"path": "/m.onnx"}, "batching": {"max_batch_size": 4}}
    )
    assert base.fingerprint() != batched.fingerprint()


def test_two_functions_serving_one_model_version_is_an_error(tmp_path: Path) -> None:
    text = (
        "functions:\n"
        "  a:\n"
        "    model: {path: m.onnx, name: clf, version: 1}\n"
        "  b:\n"
        "    model: {path: m.onnx, name: clf, version: 1}\n"
    )
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(SpecError, match=r"nuvem.yaml:5: functions.b.model: model 'clf' version"):
        load_stack_text(text, "nuvem.yaml", tmp_path)


def test_the_models_example_stack_is_valid() -> None:
    stack = load_stack(Path(__file__).parents[2] / "examples" / "models.yaml")
    assert {name for name, spec in stack.functions.items() if spec.model is not None} == {
        "resnet18",
        "densenet161",
    }
