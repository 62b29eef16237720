"""The `pools:` block: defaults, units, and errors that name the line and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nuvem.errors import SpecError
from nuvem.stack.loader import load_stack_text
from nuvem.stack.pools import NODE_LABEL, POOL_LABEL
from nuvem.stack.stack import Stack


def load(text: str, root: Path = Path("/tmp")) -> Stack:
    return load_stack_text(textwrap.dedent(text), "nuvem.yaml", root)


def test_the_issue_example_with_units_and_names_from_keys() -> None:
    stack = load(
        """
        cluster: {engine: ray}
        pools:
          cpu:
            provider: terraform
            module: local
            min: 0
            max: 3
            warm: 1
            node: {cpus: 1, memory: 2Gi, gpus: 0, labels: {pool: cpu, fast: true}}
            scale_down_after: 2m
            variables: {address_range: 127.0.100.0/24}
        """
    )
    pool = stack.pools["cpu"]
    assert (pool.name, pool.min, pool.max, pool.warm) == ("cpu", 0, 3, 1)
    assert pool.node.memory == 2 * 2**30
    assert pool.scale_down_after == 120.0
    assert pool.node.labels == {"pool": "cpu", "fast": "true"}
    assert pool.built_in
    assert pool.node_labels("cpu-2") == {
        "pool": "cpu",
        "fast": "true",
        POOL_LABEL: "cpu",
        NODE_LABEL: "cpu-2",
    }


def test_a_module_of_ones_own_is_found_relative_to_the_stack_file(tmp_path: Path) -> None:
    module = tmp_path / "infra" / "pool"
    module.mkdir(parents=True)
    (module / "main.tf").write_text("")
    stack = load(
        """
        cluster: {engine: ray}
        pools: {gpu: {module: infra/pool, max: 2}}
        """,
        tmp_path,
    )
    assert stack.pools["gpu"].module == str(module)
    assert not stack.pools["gpu"].built_in


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "pools: {cpu: {max: 1}}",
            "nuvem.yaml:1: (top level): pools add machines as nodes of a Ray cluster; set "
            "`cluster: {engine: ray}`",
        ),
        (
            "cluster: {engine: ray}\npools:\n  cpu:\n    min: 3\n    max: 2",
            "nuvem.yaml:3: pools.cpu: min (3) is above max (2); raise max or lower min",
        ),
        (
            "cluster: {engine: ray}\npools:\n  cpu:\n    max: 2\n    warm: 3",
            "nuvem.yaml:3: pools.cpu: warm (3) is above max (2)",
        ),
        (
            "cluster: {engine: ray}\npools:\n  CPU_pool: {max: 1}",
            "nuvem.yaml:3: pools.CPU_pool.name: pool name 'CPU_pool' must be lowercase",
        ),
        (
            "cluster: {engine: ray}\npools:\n  cpu:\n    node: {memory: 64Mi}",
            "nuvem.yaml:4: pools.cpu.node.memory: memory 67108864 bytes is too little for a "
            "node (Ray alone takes about 300Mi); write at least 512Mi",
        ),
        (
            "cluster: {engine: ray}\npools:\n  cpu:\n    node: {labels: {nuvem.dev/node: x}}",
            "label 'nuvem.dev/node' is set by nuvem itself; remove it",
        ),
        (
            "cluster: {engine: ray}\npools:\n  cpu:\n    variables: {nodes: {}}",
            "variable 'nodes' is passed by nuvem itself (the module contract); remove it",
        ),
        (
            "cluster: {engine: ray}\npools:\n  cpu:\n    scale_down_after: soon",
            "pools.cpu.scale_down_after",
        ),
        (
            "cluster: {engine: ray}\npools:\n  cpu:\n    module: ./nowhere",
            "nuvem.yaml:4: pools.cpu.module: no Terraform module at /tmp/nowhere",
        ),
        (
            "cluster: {engine: ray}\npools:\n  cpu:\n    provider: pulumi",
            "pools.cpu.provider",
        ),
    ],
)
def test_errors_name_the_line_and_the_fix(text: str, error: str) -> None:
    with pytest.raises(SpecError) as caught:
        load(text)
    assert error in str(caught.value)
