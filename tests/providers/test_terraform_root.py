"""The root module nuvem writes for a pool and the TF_VAR_* values it passes: pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from nuvem.cluster.ports import parse_worker_ports
from nuvem.providers import terraform_messages as messages
from nuvem.providers.provider import ChangeKind, JoinInfo, NodeRequest
from nuvem.providers.terraform_root import (
    MODULES,
    Bootstrap,
    environment,
    hcl,
    module_path,
    module_source,
    root_module,
    type_of,
    variables,
)
from nuvem.stack.pools import PoolSpec

JOIN = JoinInfo("10.0.0.5:6379", "ab" * 32, token_file="/state/cluster/token")
BOOT = Bootstrap(nuvem_package="nuvem==1", python="/venv/bin/python")


def test_values_are_written_as_hcl_that_cannot_interpolate() -> None:
    assert (
        hcl({"a": [1, 2.5, True, None], "b-c": "x"}) == '{"a" = [1, 2.5, true, null], "b-c" = "x"}'
    )
    assert (
        hcl("${var.token} %{ if } \\b \b\f é") == '"$${var.token} %%{ if } \\\\b \\u0008\\u000c é"'
    )


def test_each_variable_is_declared_with_its_values_type() -> None:
    assert type_of("x") == "string"
    assert type_of(3) == "number"
    assert type_of(False) == "bool"
    assert type_of(["a", 1]) == "tuple([string, number])"
    assert (
        type_of({"size": 2, "tags": {"a/b": "c"}}) == "object({size = number, tags = map(string)})"
    )
    with pytest.raises(TypeError, match="cannot be a Terraform value"):
        type_of({1, 2})


def test_local_pools_get_a_state_root_unless_they_set_one(tmp_path: Path) -> None:
    pool = PoolSpec(name="cpu", max=2, variables={"address_range": "127.0.9.0/24"})
    nodes = {"cpu-1": NodeRequest(1, 2, 3 * 2**30, 0, pool.node_labels("cpu-1"))}
    values = variables(pool, nodes, JOIN, BOOT, tmp_path)
    assert values["state_root"] == str(tmp_path)
    assert values["nodes"]["cpu-1"]["memory_mb"] == 3072
    assert values["nodes"]["cpu-1"]["labels"]["nuvem.dev/node"] == "cpu-1"
    assert values["cluster"]["token_file"] == "/state/cluster/token"
    own = PoolSpec(name="cpu", variables={"state_root": "/srv/nodes"})
    assert variables(own, {}, JOIN, BOOT, tmp_path)["state_root"] == "/srv/nodes"
    aws = PoolSpec(name="cpu", module="aws", variables={"region": "eu-central-1"})
    assert "state_root" not in variables(aws, {}, JOIN, BOOT, tmp_path)


def test_the_root_module_calls_the_pool_module_in_place(tmp_path: Path) -> None:
    work = tmp_path / "pools" / "cpu" / "terraform"
    pool = PoolSpec(name="cpu", variables={"tags": ["a"], "nothing": None})
    values = variables(pool, {}, JOIN, BOOT, tmp_path)
    root = root_module(module_path(pool), work, values)
    call = root["module"]["pool"]
    assert (work / call["source"]).resolve() == MODULES / "local"
    assert call["cluster"] == "${var.cluster}"
    assert root["variable"]["cluster"]["sensitive"] is True
    assert root["variable"]["nothing"] == {"type": "any", "default": None}
    assert root["output"]["nodes"]["value"] == "${module.pool.nodes}"
    env = environment(values)
    assert env["TF_VAR_pool"] == "cpu"  # a string variable is taken literally
    assert env["TF_VAR_tags"] == '["a"]'
    assert "TF_VAR_nothing" not in env
    assert module_source(Path("/srv/mod"), Path("/srv")) == "./mod"


def test_planned_changes_name_the_node_by_its_key() -> None:
    def change(action: str, key: object) -> dict[str, object]:
        resource = {"addr": f"module.pool.x.node[{key!r}]", "resource_key": key}
        return {"type": "planned_change", "change": {"action": action, "resource": resource}}

    found = messages.planned_change(change("replace", "cpu-2"))
    assert found is not None
    assert (found.kind, found.node) == (ChangeKind.REPLACE, "cpu-2")
    shared = messages.planned_change(change("create", 0))
    assert shared is not None
    assert shared.node == ""
    assert messages.planned_change(change("noop", "cpu-1")) is None
    assert messages.planned_change({"type": "apply_start"}) is None


@pytest.mark.parametrize(
    ("text", "expected"), [("20000-20199", (20000, 20199)), ("30000 - 30010", (30000, 30010))]
)
def test_worker_ports_are_a_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_worker_ports(text) == expected


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("20000", "not FIRST-LAST"),
        ("2-9", "within 1024-65535"),
        ("9000-8000", "FIRST below"),
        ("6000-6500", "6379"),
    ],
)
def test_worker_ports_refused_say_why(text: str, fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        parse_worker_ports(text)
