"""The model handler's threads follow its node's load: every core for a lone call, one when
another replica of the node is busy (a real ledger file, another owner of a slot in it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from nuvem.handler import Request
from nuvem.models.core_share import LEDGER_FILE
from nuvem.models.cpu_use import FixedUse
from nuvem.models.engine import OnnxEngine
from nuvem.models.file_ledger import FileLedger
from nuvem.models.handler import ModelHandler
from nuvem.models.onnx_export import cached_onnx
from nuvem.runtime.model_env import MODEL_ENV
from support import jpeg, weights_file

CORES = 3  # not this machine's count: what the handler is told is what it uses


@pytest.fixture(autouse=True)
def torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def handler(monkeypatch: pytest.MonkeyPatch, cache: Path, cores: int | None) -> ModelHandler:
    config = {
        "function": "resnet",
        "model": {"arch": "resnet18", "weights": str(weights_file())},
        "cache": str(cache),
        "threads": 1,
        "cores": cores,
    }
    monkeypatch.setenv(MODEL_ENV, json.dumps(config))
    model = ModelHandler()
    model.setup()
    if model.share is not None:
        # A quiet machine, whatever this one's neighbours (a parallel test suite) are doing:
        # what /proc/stat says is models/cpu_use.py's to test, not this module's.
        model.share.use = FixedUse(0.0)
    return model


def classify(model: ModelHandler) -> None:
    [answer] = model.predict([Request(body=jpeg(), path="/predictions/resnet")])
    assert isinstance(answer, dict)
    assert len(answer) == 5


def test_a_lone_call_takes_every_core_and_shares_them_when_another_is_busy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = handler(monkeypatch, tmp_path, CORES)
    classify(model)
    assert torch.get_num_threads() == CORES
    other = FileLedger.open(tmp_path / LEDGER_FILE)
    assert other is not None
    try:
        other.enter()  # another replica of the node, in the middle of its call
        classify(model)
        assert torch.get_num_threads() == 1
        other.leave()
        classify(model)
        assert torch.get_num_threads() == 1  # the other still lingers
    finally:
        other.close()
    classify(model)
    assert torch.get_num_threads() == CORES


def test_fixed_threads_stay_fixed_and_touch_no_ledger(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = handler(monkeypatch, tmp_path, None)
    classify(model)
    assert torch.get_num_threads() == 1
    assert not (tmp_path / LEDGER_FILE).exists()


def test_onnx_keeps_a_session_per_thread_count_and_they_agree(tmp_path: Path) -> None:
    engine = OnnxEngine(cached_onnx("resnet18", weights_file(), tmp_path), 1, (1, CORES))
    assert sorted(engine.sessions) == [1, CORES]
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    alone, shared, between = (engine.run({"input": pixels}, t)["output"] for t in (CORES, 1, 2))
    np.testing.assert_allclose(alone, shared, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(between, shared)  # 2 threads fit only the 1-thread session
