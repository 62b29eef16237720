"""Which function serves a model's version, and which version is the default."""

from __future__ import annotations

from typing import Any, cast

import pytest

from nuvem.control.controller import Controller
from nuvem.control.deployment import Deployment
from nuvem.errors import Conflict, NotFound
from nuvem.gateway.model_index import ModelIndex, check_version_free
from nuvem.routing.router import Router
from nuvem.stack.function import FunctionSpec


class Deployed:
    """Just what ModelIndex reads of a controller."""

    def __init__(self, *specs: dict[str, Any]) -> None:
        self.deployments = {}
        for raw in specs:
            spec = FunctionSpec.model_validate(raw)
            self.deployments[spec.name] = Deployment(spec, 1, Router(spec.name, 4, 4))


def index_of(*specs: dict[str, Any]) -> ModelIndex:
    # ModelIndex reads nothing of its controller but `deployments`.
    return ModelIndex(cast(Controller, Deployed(*specs)))


def model(name: str, version: str, default: bool = False) -> dict[str, Any]:
    return {"path": "/m.onnx", "name": name, "version": version, "default": default}


def test_the_highest_version_is_the_default_numerically() -> None:
    index = index_of(
        {"name": "a", "model": model("clf", "9")},
        {"name": "b", "model": model("clf", "10")},
        {"name": "c", "model": {"path": "/m.onnx"}},
    )
    assert index.resolve("clf") == ("10", index.versions("clf")["10"])
    assert index.resolve("clf", "9")[1].name == "a"
    assert index.resolve("c")[0] == "1"  # a model is named after its function by default


def test_a_version_marked_default_wins() -> None:
    index = index_of(
        {"name": "a", "model": model("clf", "1", default=True)},
        {"name": "b", "model": model("clf", "2")},
    )
    assert index.resolve("clf")[0] == "1"


def test_unknown_models_and_versions_say_what_exists() -> None:
    index = index_of({"name": "a", "model": model("clf", "1")})
    with pytest.raises(NotFound, match=r"model 'x' is not deployed \(models: clf\)"):
        index.resolve("x")
    with pytest.raises(NotFound, match=r"no version '3' \(versions: 1\)"):
        index.resolve("clf", "3")


def test_a_model_version_served_twice_is_a_conflict() -> None:
    deployed = Deployed({"name": "a", "model": model("clf", "1")})
    again = FunctionSpec.model_validate({"name": "b", "model": model("clf", "1")})
    with pytest.raises(Conflict, match="version '1' is already served by function 'a'"):
        check_version_free(again, deployed.deployments)
    check_version_free(again.model_copy(update={"name": "a"}), deployed.deployments)  # update
