"""The stack file's `cluster:` block: defaults, and errors that name the line and the fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nuvem.errors import SpecError
from nuvem.stack.cluster import parse_label
from nuvem.stack.loader import load_stack_text


def load(text: str) -> object:
    return load_stack_text(textwrap.dedent(text), "nuvem.yaml", Path("."))


def test_local_by_default() -> None:
    stack = load_stack_text("functions: {}\n", "nuvem.yaml", Path("."))
    assert stack.cluster.engine == "local"
    assert stack.cluster.address == ""


def test_ray_with_defaults_and_units() -> None:
    stack = load_stack_text(
        "cluster:\n  engine: ray\n  memory: 2Gi\n  object_store_memory: 100Mi\n"
        "  labels: {zone: lab, rack: 3, gpu: true}\n",
        "nuvem.yaml",
        Path("."),
    )
    cluster = stack.cluster
    assert (cluster.port, cluster.memory, cluster.object_store_memory) == (
        6379,
        2 * 2**30,
        100 * 2**20,
    )
    assert cluster.labels == {"zone": "lab", "rack": "3", "gpu": "true"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "cluster:\n  engine: docker\n",
            "nuvem.yaml:2: cluster.engine: input should be 'local' or 'ray', got 'docker'",
        ),
        (
            "cluster:\n  engin: ray\n",
            "nuvem.yaml:2: cluster.engin: unknown field 'engin'; did you mean 'engine'?",
        ),
        (
            "cluster:\n  engine: local\n  port: 7000\n",
            "nuvem.yaml:3: cluster.port: port only applies to engine: ray; "
            "set `engine: ray` or remove it",
        ),
        (
            "cluster:\n  address: 10.0.0.5:6379\n",
            "nuvem.yaml:2: cluster.address: address only applies to engine: ray; "
            "set `engine: ray` or remove it",
        ),
        (
            "cluster:\n  engine: ray\n  address: head.lan\n",
            "nuvem.yaml:3: cluster.address: address 'head.lan' is not HOST:PORT, "
            "e.g. 10.0.0.5:6379 (the Ray head's GCS port)",
        ),
        (
            "cluster:\n  engine: ray\n  address: head.lan:6379\n  cpus: 4\n",
            "nuvem.yaml:4: cluster.cpus: cpus describes a head that nuvem starts, but "
            "address 'head.lan:6379' joins one that runs already; remove one of them",
        ),
        (
            "cluster:\n  engine: ray\n  node_ip: 127.0.0.1\n",
            "nuvem.yaml:3: cluster.node_ip: Ray replaces 127.0.0.1 with this machine's "
            "address; leave it out, or use 127.0.0.2 (and up) for several nodes on one machine",
        ),
        (
            "cluster:\n  engine: ray\n  node_ip: head.lan\n",
            "nuvem.yaml:3: cluster.node_ip: 'head.lan' is not an IP address, e.g. 10.0.0.5",
        ),
        (
            "cluster:\n  engine: ray\n  port: 80\n",
            "nuvem.yaml:3: cluster.port: input should be greater than or equal to 1024, got 80",
        ),
        (
            "cluster:\n  engine: ray\n  object_store_memory: 10Mi\n",
            "nuvem.yaml:3: cluster.object_store_memory: object_store_memory 10485760 bytes "
            "is below Ray's minimum of 75Mi; write e.g. 256Mi",
        ),
        (
            "cluster:\n  engine: ray\n  labels:\n    ray.io/zone: a\n",
            "nuvem.yaml:3: cluster.labels: label 'ray.io/zone' starts with 'ray.io/', "
            "which Ray keeps for its own",
        ),
        (
            "cluster:\n  engine: ray\n  gpus: -1\n",
            "nuvem.yaml:3: cluster.gpus: input should be greater than or equal to 0, got -1",
        ),
    ],
)
def test_errors_name_the_line_and_the_fix(text: str, error: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_stack_text(text, "nuvem.yaml", Path("."))
    assert str(caught.value) == error


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("zone", "label 'zone' is not key=value, e.g. zone=lab or gpu=a100"),
        ("=a", "label '=a' is not key=value"),
        ("-zone=a", "label key '-zone' is not a name"),
        ("zone=a b", "label zone='a b' has a value Ray refuses"),
        ("bad_prefix!/zone=a", "label 'bad_prefix!/zone' has a prefix that is not a DNS name"),
    ],
)
def test_labels_from_the_command_line(text: str, error: str) -> None:
    with pytest.raises(ValueError, match="^" + error.replace("(", r"\(").replace(")", r"\)")):
        parse_label(text)
    assert parse_label("example.com/gpu=a100") == ("example.com/gpu", "a100")
    assert parse_label("empty=") == ("empty", "")
