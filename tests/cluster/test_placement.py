"""Placement in the cluster engine's terms: image functions go only to nodes with a
container engine, and a function no node can run waits with the reason."""

from __future__ import annotations

import pytest

from nuvem.cluster.placement import (
    NodeRoom,
    actor_options,
    demand_of,
    label_matches,
    pending_reason,
)
from nuvem.stack.container import CONTAINERS_LABEL
from nuvem.stack.function import FunctionSpec


def room(address: str, **labels: str) -> NodeRoom:
    resources = {"CPU": 2.0, "memory": float(2**30)}
    return NodeRoom(address, resources, resources, labels)


@pytest.mark.parametrize(
    ("wanted", "value", "matches"),
    [
        ("a", "a", True),
        ("a", "b", False),
        ("a", None, False),
        ("!a", None, True),
        ("!a", "a", False),
        ("in(docker,podman)", "podman", True),
        ("in(docker,podman)", None, False),
        ("!in(docker,podman)", "docker", False),
        ("!in(docker,podman)", "crun", True),
    ],
)
def test_labels_match_as_rays_selectors_do(wanted: str, value: str | None, matches: bool) -> None:
    assert label_matches(wanted, value) is matches


def test_an_image_function_asks_ray_for_a_node_with_an_engine() -> None:
    image = FunctionSpec.model_validate({"name": "box", "image": "localhost/x:1"})
    handler = FunctionSpec.model_validate({"name": "fn", "handler": "app:fn"})
    assert actor_options(image)["label_selector"] == {CONTAINERS_LABEL: "in(docker,podman)"}
    assert "label_selector" not in actor_options(handler)


def test_no_node_with_an_engine_is_a_pending_reason_naming_the_fix() -> None:
    demand = demand_of(FunctionSpec.model_validate({"name": "box", "image": "localhost/x:1"}))
    shortage = pending_reason(demand, [room("10.0.0.1"), room("10.0.0.2", zone="a")])
    assert shortage.short == "engine"
    assert "no node runs containers" in shortage.reason
    assert "nuvem node join" in shortage.reason
    placed = pending_reason(
        demand, [room("10.0.0.1"), room("10.0.0.2", **{CONTAINERS_LABEL: "podman"})]
    )
    assert placed.short == "busy"
