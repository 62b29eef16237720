"""What a model replica is told at start about its threads: fixed by the stack, or following
its node's load with the node's cores; and that OpenMP's idle threads never spin."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from nuvem.runtime.model_env import MODEL_ENV, model_environ, node_cores
from nuvem.runtime.worker_command import worker_environ
from nuvem.stack.function import FunctionSpec
from support import PLATFORM_PYTHON

MODEL = {"arch": "resnet18", "weights": "/w.safetensors"}


def function(**overrides: Any) -> FunctionSpec:
    return FunctionSpec.model_validate({"name": "m", "model": MODEL, **overrides})


def told(spec: FunctionSpec) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(model_environ(spec, Path("/cache"))[MODEL_ENV])
    return config


def test_by_default_threads_follow_the_load_over_the_node_s_cores() -> None:
    config = told(function(scaling={"min": 2, "max": 2}))
    assert config["cores"] == node_cores() == len(os.sched_getaffinity(0))
    assert config["threads"] == max(1, node_cores() // 2)  # until the first call


@pytest.mark.parametrize(
    "overrides",
    [{"model": {**MODEL, "threads": 1}}, {"resources": {"cpu": 1}}],
    ids=["model.threads", "resources.cpu"],
)
def test_threads_the_stack_fixes_stay_fixed(overrides: dict[str, Any]) -> None:
    config = told(function(**overrides))
    assert config["cores"] is None
    assert config["threads"] == 1


def test_openmp_threads_wait_passively_unless_the_operator_chose() -> None:
    spec = function()
    environ = worker_environ(spec, PLATFORM_PYTHON, "r1", Path("/cache"), base={})
    assert environ["OMP_WAIT_POLICY"] == "PASSIVE"
    chosen = worker_environ(
        spec, PLATFORM_PYTHON, "r1", Path("/cache"), base={"OMP_WAIT_POLICY": "ACTIVE"}
    )
    assert chosen["OMP_WAIT_POLICY"] == "ACTIVE"
    own = worker_environ(
        function(env={"OMP_WAIT_POLICY": "ACTIVE"}), PLATFORM_PYTHON, "r1", None, base={}
    )
    assert own["OMP_WAIT_POLICY"] == "ACTIVE"
