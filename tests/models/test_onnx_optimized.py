"""ONNX Runtime's optimised graph is saved by the first session that optimises a model and
read by the next ones: the same answers, and a broken saved graph is only a slower start."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from nuvem.models.engine import OnnxEngine
from nuvem.models.onnx_export import cached_onnx
from support import weights_file

pytest.importorskip("onnxruntime")


def saved_graphs(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.optimized.onnx"))


def test_the_saved_graph_builds_the_next_sessions_and_answers_alike(tmp_path: Path) -> None:
    model = tmp_path / "resnet18.onnx"
    shutil.copy(cached_onnx("resnet18", weights_file(), None), model)
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)

    first = OnnxEngine(model, 1, (1, 2))
    (graph,) = saved_graphs(tmp_path)  # one per model, CPU and version: not per session
    assert not list(tmp_path.glob("*.part"))
    again = OnnxEngine(model, 1, (1, 2))
    assert saved_graphs(tmp_path) == [graph]
    for threads in (1, 2):
        np.testing.assert_array_equal(
            again.run({"input": pixels}, threads)["output"],
            first.run({"input": pixels}, threads)["output"],
        )

    graph.write_bytes(b"not a graph")  # torn by a crash, say: the model is optimised again
    broken = OnnxEngine(model, 1)
    np.testing.assert_array_equal(
        broken.run({"input": pixels})["output"], first.run({"input": pixels}, 1)["output"]
    )


def test_another_model_gets_its_own_graph(tmp_path: Path) -> None:
    for seed in (0, 1):
        model = tmp_path / f"model-{seed}.onnx"
        shutil.copy(cached_onnx("resnet18", weights_file(seed=seed), None), model)
        OnnxEngine(model, 1)
    assert len(saved_graphs(tmp_path)) == 2
