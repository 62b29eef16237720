"""A real Ray cluster: token authentication, nodes joining and leaving, failure detection.

The head and two worker nodes come from the session's `ray_cluster` fixture
(tests/ray_cluster.py); tests that make a node leave or die start one of their own.
The CLI runs as the installed command, as a user runs it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from nuvem.cluster.head import running_head
from nuvem.cluster.membership import Membership, Node, NodeState
from nuvem.cluster.node import RayNode
from nuvem.cluster.options import ExistingHead, JoinOptions, Offer
from nuvem.cluster.process_session import process_alive, session_members
from nuvem.cluster.record import read_head
from nuvem.errors import ClusterError
from nuvem.stack.container import CONTAINERS_LABEL
from ray_cluster import NODE_IPS, SMALL_STORE, RayCluster, next_ip, worker_range
from support import block_until

pytestmark = pytest.mark.slow

# A driver that places one actor on the node it is given and keeps it until stdin closes.
REPLICA_ON_NODE = """
import sys
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from nuvem.cluster.driver import connect
from nuvem.cluster.token import read_token

address, token, node_id = sys.argv[1:]
connect(address, read_token(Path(token)))


@ray.remote(num_cpus=0)
class Replica:
    def node(self):
        return ray.get_runtime_context().get_node_id()


strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
replica = Replica.options(scheduling_strategy=strategy).remote()
print(ray.get(replica.node.remote()), flush=True)
sys.stdin.read()
"""


def nuvem(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nuvem.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "1000"},  # one line per error, for the assertions
        check=False,
    )


def node_in(membership: Membership, address: str, port: int, state: NodeState) -> Node | None:
    """The node at `address:port` once it is in `state`."""
    found = membership.node_at(address, port)
    return found if found is not None and found.state is state else None


def by_address(nodes: list[Node]) -> dict[str, Node]:
    return {n.address: n for n in nodes if n.state is not NodeState.DEAD}


def test_head_is_recorded_with_a_private_token(ray_cluster: RayCluster) -> None:
    head = read_head(ray_cluster.state_dir)
    assert head.address == ray_cluster.address
    assert head.pid is not None
    assert process_alive(head.pid)
    assert stat.S_IMODE(ray_cluster.token_file.stat().st_mode) == 0o600


def test_head_refuses_an_anonymous_driver_and_accepts_the_token(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    # The GCS answers every client the same way (ray.init, a raylet, a GcsClient);
    # a GcsClient is refused in a second, where ray.init retries for ~22 s first.
    anonymous = textwrap.dedent(
        f"""
        from ray._raylet import GcsClient
        GcsClient(address={ray_cluster.address!r}).get_all_node_info(timeout=5)
        print("connected")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    refused = subprocess.run(
        [sys.executable, "-c", anonymous], capture_output=True, text=True, env=env, timeout=120
    )
    assert refused.returncode != 0
    assert "connected" not in refused.stdout
    assert "InvalidAuthToken: Authentication token is missing or incorrect" in refused.stderr

    with_token = textwrap.dedent(
        f"""
        import ray
        from pathlib import Path
        from nuvem.cluster.driver import connect
        from nuvem.cluster.token import read_token
        connect({ray_cluster.address!r}, read_token(Path({str(ray_cluster.token_file)!r})))
        print("connected", sum(1 for n in ray.nodes() if n["Alive"]))
        """
    )
    accepted = subprocess.run(
        [sys.executable, "-c", with_token], capture_output=True, text=True, env=env, timeout=120
    )
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert accepted.stdout.split() == ["connected", str(1 + len(NODE_IPS))]


def test_joined_nodes_show_their_labels_and_resources(ray_cluster: RayCluster) -> None:
    nodes = by_address(ray_cluster.membership().nodes())
    head = nodes[ray_cluster.address.split(":")[0]]
    assert head.head
    assert head.state is NodeState.ALIVE
    assert head.total.cpu == 1
    first, second = (nodes[ip] for ip in NODE_IPS)
    assert first.state is second.state is NodeState.ALIVE
    # The fixture says the first node runs containers (image functions are placed there).
    assert first.labels == {"rack": "0", "zone": "a", CONTAINERS_LABEL: "podman"}
    assert second.labels == {"rack": "1", "zone": "b"}
    # Declared on a machine without any: Ray schedules by what the node says it has.
    assert (first.total.cpu, first.total.gpu, first.total.memory) == (1, 2, 2**30)
    assert (second.total.cpu, second.total.gpu) == (1, 0)
    assert first.available == first.total  # nothing runs on it yet
    assert [n.node.id for n in ray_cluster.nodes] == [first.id, second.id]


def test_nodes_command_lists_the_cluster(ray_cluster: RayCluster) -> None:
    listed = nuvem("nodes", "--json", "--state-dir", str(ray_cluster.state_dir))
    assert listed.returncode == 0, listed.stderr
    nodes = {n["address"]: n for n in json.loads(listed.stdout) if n["state"] == "alive"}
    assert set(nodes) == {ray_cluster.address.split(":")[0], *NODE_IPS}
    first = nodes[NODE_IPS[0]]
    assert first["labels"] == {"rack": "0", "zone": "a", CONTAINERS_LABEL: "podman"}
    assert first["resources"]["total"] == {"cpu": 1.0, "gpu": 2.0, "memory": 2**30}
    assert first["resources"]["available"]["gpu"] == 2.0
    assert first["head"] is False
    assert first["death"] == ""

    table = nuvem("nodes", "--state-dir", str(ray_cluster.state_dir))
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if NODE_IPS[0] in line)
    assert row.split()[:5] == [NODE_IPS[0], "alive", "-", "0/1", "0/2"]  # "-": no pool
    assert "rack=0, zone=a" in row

    # Any machine with the token can ask, given the head's address.
    direct = nuvem(
        "nodes",
        "--json",
        "--address",
        ray_cluster.address,
        "--token-file",
        str(ray_cluster.token_file),
    )
    assert direct.returncode == 0, direct.stderr
    assert {n["id"] for n in json.loads(direct.stdout)} >= {n.node.id for n in ray_cluster.nodes}


def test_token_command_prints_the_token_and_the_join_command(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    printed = nuvem("node", "token", "--state-dir", str(ray_cluster.state_dir))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == ray_cluster.token_file.read_text() + "\n"

    command = nuvem("node", "token", "--command", "--state-dir", str(ray_cluster.state_dir))
    assert command.returncode == 0, command.stderr
    save, join = command.stdout.strip().split(" && nuvem ")
    assert join == f"node join {ray_cluster.address} --token-file nuvem-cluster-token"
    subprocess.run(["bash", "-c", save], cwd=tmp_path, check=True)  # what the new machine runs
    saved = tmp_path / "nuvem-cluster-token"
    assert saved.read_text() == ray_cluster.token_file.read_text()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600

    empty = nuvem("node", "token", "--state-dir", str(tmp_path / "none"))
    assert empty.returncode == 3
    assert f"no cluster token in {tmp_path / 'none'}" in empty.stderr


def test_a_wrong_or_missing_token_is_refused_at_once(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-token"
    wrong.write_text("f" * 64)
    wrong.chmod(0o600)
    join = ("node", "join", ray_cluster.address, "--node-ip", next_ip(), "--state-dir")
    started = time.monotonic()
    refused = nuvem(*join, str(tmp_path / "s1"), "--token-file", str(wrong))
    took = time.monotonic() - started
    print(f"wrong token refused after {took:.2f}s (Ray alone: ~22 s)")
    assert refused.returncode == 3, refused.stderr
    assert (
        f"error: the Ray head at {ray_cluster.address} refused the cluster token from {wrong}"
        in refused.stderr
    )
    assert "nuvem node token" in refused.stderr
    assert took < 10  # the CLI and Ray's import included; Ray's own refusal takes ~22 s

    missing = nuvem(*join, str(tmp_path / "s2"), "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 3
    assert f"no cluster token at {tmp_path / 'nope'}" in missing.stderr

    wrong.chmod(0o644)
    readable = nuvem(*join, str(tmp_path / "s3"), "--token-file", str(wrong))
    assert readable.returncode == 3
    assert f"chmod 600 {wrong}" in readable.stderr
    # None of them started a Ray process.
    assert not [n for n in ray_cluster.membership().nodes() if n.address == join[4]]


def test_an_address_that_is_not_a_ray_head_is_named(ray_cluster: RayCluster) -> None:
    from nuvem.cluster.gcs import probe
    from nuvem.cluster.ports import free_ports
    from nuvem.cluster.token import read_token

    token = read_token(ray_cluster.token_file)
    closed = f"127.0.0.1:{free_ports(1)[0]}"
    with pytest.raises(ClusterError, match=f"cannot reach a Ray head at {closed}"):
        probe(closed, token)
    head = read_head(ray_cluster.state_dir)
    assert head.pid is not None
    http = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert http.stdout is not None
        port = http.stdout.readline().split("port ")[1].split()[0]
        with pytest.raises(ClusterError, match="answers, but it is not a Ray head"):
            probe(f"127.0.0.1:{port}", token)
    finally:
        http.kill()
        http.wait()
        if http.stdout is not None:
            http.stdout.close()


def test_an_existing_head_is_used_and_checked(ray_cluster: RayCluster, tmp_path: Path) -> None:
    state = tmp_path / "gateway"
    with running_head(ExistingHead(ray_cluster.address, ray_cluster.token_file), state) as address:
        assert address == ray_cluster.address
        assert read_head(state).pid is None  # not nuvem's to stop
    assert not (state / "cluster" / "head.json").exists()
    # A wrong token is refused by the same check as a node's (see the wrong-token test).


def _join(ray_cluster: RayCluster, tmp_path: Path, **offer: object) -> RayNode:
    options = JoinOptions(
        ray_cluster.address,
        ray_cluster.token_file,
        node_ip=next_ip(),
        offer=Offer(cpus=1, object_store_memory=80 * 2**20, **offer),  # type: ignore[arg-type]
        workers=worker_range(),
    )
    started = time.monotonic()
    node = RayNode.join(options, tmp_path / "ray-node.log")
    print(f"node {options.node_ip} alive {time.monotonic() - started:.2f}s after ray start")
    return node


def test_a_killed_node_is_seen_dead_within_seconds(ray_cluster: RayCluster, tmp_path: Path) -> None:
    node = _join(ray_cluster, tmp_path)
    membership = ray_cluster.membership()
    killed = time.monotonic()
    node.kill()  # every process of the node at once, as when its machine dies
    dead = block_until(
        lambda: node_in(membership, node.node.address, node.node.port, NodeState.DEAD),
        within=15,
        what="the killed node declared dead",
    )
    assert dead is not None
    took = time.monotonic() - killed
    print(f"SIGKILLed node seen dead after {took:.2f}s")
    assert took < 5  # ~1.5-2.5 s with nuvem's health checks; Ray's defaults take ~15 s
    assert "health check" in dead.death
    # The other nodes are unaffected.
    assert all(n.state() is NodeState.ALIVE for n in ray_cluster.nodes)


def join_in_foreground(ray_cluster: RayCluster, state: Path, *args: str) -> subprocess.Popen[str]:
    """`nuvem node join` as a terminal runs it, in a session of its own."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nuvem.cli.main",
            "node",
            "join",
            ray_cluster.address,
            "--token-file",
            str(ray_cluster.token_file),
            "--object-store-memory",
            SMALL_STORE,
            "--state-dir",
            str(state),
            *args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "1000"},
        start_new_session=True,  # like a terminal's foreground job, apart from pytest's
    )


def joined_record(state: Path, process: subprocess.Popen[str]) -> dict[str, Any]:
    path = state / "cluster" / "node.json"
    block_until(
        lambda: path.exists() or process.poll() is not None, within=90, what="the node joined"
    )
    assert path.exists(), process.communicate()[1]
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def _raylet(joined: dict[str, Any]) -> int:
    return next(
        pid
        for pid in session_members(joined["ray_pid"])
        if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet"
    )


def test_a_node_cut_off_and_declared_dead_rejoins_by_itself(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    state = tmp_path / "node-state"
    ip = next_ip()
    process = join_in_foreground(ray_cluster, state, "--node-ip", ip, "--cpus", "1")
    try:
        first = joined_record(state, process)
        os.kill(_raylet(first), signal.SIGSTOP)  # a network cut, as the head sees it
        membership = ray_cluster.membership()

        def back() -> bool:
            alive = [
                n
                for n in membership.nodes()
                if n.address == ip and n.state is NodeState.ALIVE and n.id != first["node_id"]
            ]
            return bool(alive)

        block_until(back, within=60, what="the node back under a new id")
        process.send_signal(signal.SIGINT)  # and it still leaves when asked
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "the head declared this node dead" in stderr
    assert "rejoining" in stderr
    assert session_members(first["ray_pid"]) == []


def test_a_node_the_head_declares_dead_makes_join_exit(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    # A frozen raylet is what a network cut looks like from the head: no heartbeats, while
    # every process of the node still runs. The head gives up on it; nuvem node join
    # must then end the node and exit non-zero, for its supervisor to start it again.
    state = tmp_path / "node-state"
    process = join_in_foreground(
        ray_cluster, state, "--node-ip", next_ip(), "--cpus", "1", "--no-rejoin"
    )
    try:
        joined = joined_record(state, process)
        os.kill(_raylet(joined), signal.SIGSTOP)
        stopped = time.monotonic()
        membership = ray_cluster.membership()
        block_until(
            lambda: node_in(membership, joined["address"], joined["port"], NodeState.DEAD),
            within=15,
            what="the frozen node declared dead",
        )
        print(f"frozen node seen dead after {time.monotonic() - stopped:.2f}s")
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, stderr
    assert "the node is gone: the head declared this node dead" in stderr
    assert session_members(joined["ray_pid"]) == []  # the frozen raylet too
    assert not (state / "cluster" / "node.json").exists()


def test_ctrl_c_on_a_foreground_join_drains_and_leaves(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    ip = next_ip()
    state = tmp_path / "node-state"
    process = join_in_foreground(
        ray_cluster,
        state,
        *("--node-ip", ip, "--cpus", "1", "--gpus", "2", "--label", "role=spare"),
        # No engine label, whatever this machine runs: the labels below are the ones given.
        *("--container-engine", "none"),
        *("--drain-timeout", "60"),
    )
    membership = ray_cluster.membership()
    try:
        joined = joined_record(state, process)
        node = membership.node_at(ip, joined["port"])
        assert node is not None
        assert node.state is NodeState.ALIVE
        assert node.labels == {"role": "spare"}
        assert node.total.gpu == 2
        # Replica actors keep code and environments in the state folder `--state-dir` named,
        # which they find in the environment Ray's processes pass on.
        raylet = Path(f"/proc/{joined['ray_pid']}/environ").read_bytes().split(b"\0")
        assert f"NUVEM_STATE_DIR={state}".encode() in raylet
        again = nuvem(
            "node",
            "join",
            ray_cluster.address,
            "--token-file",
            str(ray_cluster.token_file),
            "--node-ip",
            next_ip(),
            "--state-dir",
            str(state),
        )
        assert again.returncode == 5  # one node per state folder
        assert f"this state folder runs a node already (pid {process.pid}" in again.stderr

        # Work on the node (an actor, as a replica will be) keeps it draining, not gone,
        # until that work ends: here its driver exits, as the runtime will move a replica.
        work = subprocess.Popen(
            [
                sys.executable,
                "-c",
                REPLICA_ON_NODE,
                ray_cluster.address,
                str(ray_cluster.token_file),
                node.id,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert work.stdout is not None
            assert work.stdout.readline().strip() == node.id, work.stderr
            interrupted = time.monotonic()
            process.send_signal(signal.SIGINT)
            draining = block_until(
                lambda: node_in(membership, ip, joined["port"], NodeState.DRAINING),
                within=30,
                what="the node draining",
            )
            assert draining is not None
            assert draining.id == node.id
            assert process.poll() is None  # it waits for the work to move
        finally:
            work.communicate(input="", timeout=60)  # its driver exits, the actor with it
        _, stderr = process.communicate(timeout=60)
        took = time.monotonic() - interrupted
        print(f"Ctrl-C to left, with an actor moved off meanwhile: {took:.2f}s")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"joined {ray_cluster.address} as node {node.id[:12]} at {ip}" in stderr
    assert "leaving: draining node" in stderr
    assert f"left {ray_cluster.address}" in stderr
    gone = membership.node_at(ip, joined["port"])
    assert gone is not None
    assert gone.state is NodeState.DEAD
    assert gone.death == "nuvem node leave: the node is draining"  # drained, not lost
    assert session_members(joined["ray_pid"]) == []  # every Ray process of that node ended
    assert not (state / "cluster" / "node.json").exists()


def test_a_detached_node_leaves_when_asked(ray_cluster: RayCluster, tmp_path: Path) -> None:
    ip = next_ip()
    state = tmp_path / "node-state"
    joined = nuvem(
        "node",
        "join",
        ray_cluster.address,
        "--token-file",
        str(ray_cluster.token_file),
        "--node-ip",
        ip,
        "--cpus",
        "1",
        "--object-store-memory",
        SMALL_STORE,
        "--detach",
        "--state-dir",
        str(state),
        timeout=120,
    )
    assert joined.returncode == 0, joined.stderr
    record = json.loads((state / "cluster" / "node.json").read_text())
    assert f"at {ip} (pid {record['pid']}); `nuvem node leave` to leave" in joined.stderr
    membership = ray_cluster.membership()
    node = membership.node_at(ip, record["port"])
    assert node is not None
    assert node.state is NodeState.ALIVE

    left = nuvem("node", "leave", "--state-dir", str(state))
    assert left.returncode == 0, left.stderr
    assert f"node {record['node_id'][:12]} at {ip} left {ray_cluster.address}" in left.stderr
    assert not process_alive(record["pid"])
    gone = membership.node_at(ip, record["port"])
    assert gone is not None
    assert gone.state is NodeState.DEAD
    assert session_members(record["ray_pid"]) == []

    nothing = nuvem("node", "leave", "--state-dir", str(state))
    assert nothing.returncode == 13
    assert f"no node runs from {state}" in nothing.stderr


@pytest.mark.e2e
def test_a_gateway_uses_the_head_its_stack_names(ray_cluster: RayCluster, tmp_path: Path) -> None:
    from support import free_port

    state = tmp_path / "gateway"
    (tmp_path / "nuvem.yaml").write_text(
        "cluster:\n  engine: ray\n"
        f"  address: {ray_cluster.address}\n  token_file: {ray_cluster.token_file}\n"
    )
    port = free_port()
    env = {
        **os.environ,
        "NUVEM_URL": f"http://127.0.0.1:{port}",
        "NUVEM_ADMIN_PASSWORD": "cluster-e2e-password",
        "NUVEM_STATE_DIR": str(state),
        "COLUMNS": "1000",
    }
    up = subprocess.run(
        [
            sys.executable,
            "-m",
            "nuvem.cli.main",
            "up",
            "-f",
            str(tmp_path / "nuvem.yaml"),
            "--port",
            str(port),
            "--detach",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr
        head = read_head(state)
        assert head.address == ray_cluster.address
        assert head.pid is None  # nuvem did not start it, so it will not stop it
        listed = nuvem("nodes", "--json", "--state-dir", str(state))
        assert listed.returncode == 0, listed.stderr
        assert {n["id"] for n in json.loads(listed.stdout)} >= {
            n.node.id for n in ray_cluster.nodes
        }
        command = nuvem("node", "token", "--command", "--state-dir", str(state))
        assert f"nuvem node join {ray_cluster.address} --token-file" in command.stdout
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "nuvem.cli.main", "down"],
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    assert not (state / "cluster" / "head.json").exists()
    assert all(n.state() is NodeState.ALIVE for n in ray_cluster.nodes)
