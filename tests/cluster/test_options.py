"""The `ray start` command lines and environments nuvem builds: pure, so tested without Ray."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nuvem.cluster.options import (
    HEALTH_CHECKS,
    ExistingHead,
    HeadOptions,
    JoinOptions,
    Offer,
    head_command,
    join_command,
    plan,
    ray_environ,
)
from nuvem.cluster.ports import MAX_WORKER_PORT, MIN_WORKER_PORT, RESERVED, free_node_ports
from nuvem.cluster.token import token_path
from nuvem.stack.loader import load_stack_text

PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--min-worker-port",
    "--max-worker-port",
)


def flags(argv: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)


def test_every_port_of_a_node_is_chosen_and_none_is_reserved() -> None:
    for _ in range(20):
        ports = free_node_ports((20000, 20199))
        single = ports.listening()
        assert len(set(single)) == len(single) == 6
        assert not set(single) & RESERVED  # never 8080, nor Ray's fixed defaults
        assert all(not 20000 <= port <= 20199 for port in single)
        assert (ports.min_worker, ports.max_worker) == (20000, 20199)


def test_head_command_pins_ports_and_turns_off_what_would_listen_unauthenticated(
    tmp_path: Path,
) -> None:
    ports = free_node_ports()
    options = HeadOptions(tmp_path / "token", port=7001, node_ip="10.0.0.5")
    argv = head_command(options, ports, client_port=None)
    given = flags(argv)
    assert argv[argv.index("start") + 1 :][:2] == ["--block", "--head"]
    assert given["--port"] == "7001"
    assert given["--node-ip-address"] == "10.0.0.5"
    assert all(flag in given for flag in PORT_FLAGS)
    assert given["--include-dashboard"] == "false"
    assert "--no-monitor" in argv  # the autoscaler monitor serves metrics on 0.0.0.0:44217
    assert "--ray-client-server-port" not in given  # minimal Ray starts no client server
    assert "8080" not in " ".join(argv)
    with_client = flags(head_command(options, ports, client_port=23456))
    assert with_client["--ray-client-server-port"] == "23456"
    assert not MIN_WORKER_PORT <= 23456 <= MAX_WORKER_PORT


def test_offer_becomes_resources_and_labels() -> None:
    offer = Offer(cpus=4, gpus=2, memory=2**30, object_store_memory=80 * 2**20, labels={"a": "1"})
    join = JoinOptions("10.0.0.5:6379", Path("t"), node_ip="10.0.0.7", offer=offer)
    given = flags(join_command(join, free_node_ports()))
    assert given["--address"] == "10.0.0.5:6379"
    assert given["--node-ip-address"] == "10.0.0.7"
    assert given["--num-cpus"] == "4"
    assert given["--num-gpus"] == "2"
    assert given["--memory"] == str(2**30)
    assert given["--object-store-memory"] == str(80 * 2**20)
    assert given["--labels"] == "a=1"
    assert "--head" not in given
    assert "--port" not in given
    # Left out, Ray detects what the machine has.
    bare = flags(join_command(JoinOptions("h:1", Path("t")), free_node_ports()))
    assert "--num-cpus" not in bare
    assert "--num-gpus" not in bare
    assert "--memory" not in bare


def test_environment_asks_for_the_token_and_fast_failure_detection(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "RAY_AUTH_TOKEN": "leaked", "RAY_ADDRESS": "elsewhere:1"}
    head = ray_environ(base, tmp_path / "token", head=True)
    assert head["RAY_AUTH_MODE"] == "token"
    assert head["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "token")
    assert "RAY_AUTH_TOKEN" not in head
    assert "RAY_ADDRESS" not in head
    assert head["PATH"] == "/bin"
    assert head["RAY_enable_metrics_collection"] == "0"
    assert {k: head[k] for k in HEALTH_CHECKS} == HEALTH_CHECKS
    node = ray_environ(base, tmp_path / "token", head=False)
    assert node["RAY_AUTH_MODE"] == "token"
    assert not HEALTH_CHECKS.keys() & node.keys()  # the GCS, on the head, checks health


def _cluster(tmp_path: Path, block: str) -> object:
    text = "cluster:\n" + textwrap.indent(textwrap.dedent(block), "  ")
    return plan(load_stack_text(text, "nuvem.yaml", tmp_path).cluster, tmp_path / "state")


def test_plan_from_the_stack_block(tmp_path: Path) -> None:
    assert plan(load_stack_text("", "nuvem.yaml", tmp_path).cluster, tmp_path) is None
    started = _cluster(tmp_path, "engine: ray\ncpus: 2\ngpus: 1\nmemory: 4Gi\nlabels: {zone: lab}")
    assert started == HeadOptions(
        token_path(tmp_path / "state"),
        offer=Offer(cpus=2, gpus=1, memory=4 * 2**30, labels={"zone": "lab"}),
    )
    existing = _cluster(tmp_path, "engine: ray\naddress: 10.0.0.5:6379\ntoken_file: ray.token")
    # Relative to the stack file's folder, like a handler's.
    assert existing == ExistingHead("10.0.0.5:6379", (tmp_path / "ray.token").resolve())


@pytest.mark.parametrize("ip", ["127.0.0.2", "10.1.2.3"])
def test_plan_keeps_the_head_address(tmp_path: Path, ip: str) -> None:
    options = _cluster(tmp_path, f"engine: ray\nnode_ip: {ip}\nport: 7000")
    assert isinstance(options, HeadOptions)
    assert (options.node_ip, options.port) == (ip, 7000)
