"""CLI commands about the cluster's nodes: join, leave, token, and the list of nodes.

They talk to the Ray head directly with the cluster token (the gateway's GET
/system/nodes comes with the Ray runtime), so they work on any machine that has the
token, the head's included.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nuvem.cli.client import Client
from nuvem.cli.context import print_json, settings_for
from nuvem.cluster import record, supervisor
from nuvem.cluster.engine_label import engine_label
from nuvem.cluster.membership import Membership, Node, NodeState, Resources, newest_by
from nuvem.cluster.options import JoinOptions, Offer
from nuvem.cluster.ports import MAX_WORKER_PORT, MIN_WORKER_PORT, parse_worker_ports
from nuvem.cluster.token import read_token, token_path
from nuvem.config import Settings
from nuvem.errors import BadRequest, ClusterTokenError, NotFound, NuvemError
from nuvem.stack.cluster import MIN_OBJECT_STORE, check_node_ip, parse_label, split_address
from nuvem.stack.container import CONTAINERS_LABEL
from nuvem.stack.pools import NODE_LABEL, POOL_LABEL
from nuvem.stack.units import parse_memory

out = Console()
err = Console(stderr=True)

TOKEN_FILE_NAME = "nuvem-cluster-token"


def join(
    address: str,
    token_file: Path,
    node_ip: str | None,
    cpus: int | None,
    gpus: int | None,
    memory: str | None,
    labels: list[str],
    object_store_memory: str,
    drain_timeout: float,
    detach: bool,
    state_dir: Path | None,
    rejoin: bool = True,
    worker_ports: str | None = None,
    temp_dir: Path | None = None,
    container_engine: str = "auto",
) -> int:

    try:
        split_address(address)
        ip = check_node_ip(node_ip) if node_ip else ""
        offer = Offer(
            cpus=cpus,
            gpus=gpus,
            memory=parse_memory(memory) if memory is not None else None,
            object_store_memory=parse_memory(object_store_memory),
            labels=engine_label(dict(parse_label(label) for label in labels), container_engine),
        )
        workers = (
            parse_worker_ports(worker_ports)
            if worker_ports is not None
            else (MIN_WORKER_PORT, MAX_WORKER_PORT)
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if offer.object_store_memory < MIN_OBJECT_STORE:
        raise BadRequest(
            f"--object-store-memory {object_store_memory} is below Ray's minimum of 75Mi"
        )
    settings = settings_for(state_dir)
    if detach:
        argv = [arg for arg in sys.argv[1:] if arg != "--detach"]
        if state_dir is None:  # the child must use the same state folder
            argv += ["--state-dir", str(settings.state_dir)]
        with err.status(f"joining {address}"):
            joined = supervisor.detach(argv, settings.state_dir)
        err.print(
            f"joined {joined.head} as node {joined.node_id[:12]} at {joined.address} "
            f"(pid {joined.pid}); `nuvem node leave` to leave",
            highlight=False,
        )
        return 0
    options = JoinOptions(
        address,
        token_file,
        node_ip=ip,
        offer=offer,
        workers=workers,
        temp_dir=temp_dir.absolute() if temp_dir is not None else None,
    )

    def say(line: str) -> None:
        err.print(line, highlight=False, soft_wrap=True)

    return supervisor.run(
        options, settings.state_dir, say, drain_timeout=drain_timeout, rejoin=rejoin
    )


def leave(state_dir: Path | None) -> None:

    settings = settings_for(state_dir)
    with err.status("draining this node and leaving"):
        found = supervisor.leave(settings.state_dir)
    err.print(f"node {found.node_id[:12]} at {found.address} left {found.head}", highlight=False)


def token(command: bool, state_dir: Path | None) -> None:

    settings = settings_for(state_dir)
    try:
        head: record.HeadRecord | None = record.read_head(settings.state_dir)
    except NotFound:
        head = None
    path = Path(head.token_file) if head is not None else token_path(settings.state_dir)
    if not path.exists():
        raise ClusterTokenError(
            f"no cluster token in {settings.state_dir}",
            hint="it is made when `nuvem up` starts a Ray head (a stack with "
            "`cluster: {engine: ray}`); pass the state folder of that gateway with --state-dir",
        )
    value = read_token(path).value
    if not command:
        sys.stdout.write(value + "\n")
        return
    if head is None:
        raise NotFound(
            f"no Ray head runs from {settings.state_dir}, so there is no address to join",
            hint="start the gateway with a stack that says `cluster: {engine: ray}`",
        )
    # For a machine with nothing but nuvem: write the token readable by its owner only,
    # then join. It holds the secret: send it the way you would send a password.
    sys.stdout.write(
        f"umask 077 && printf '%s' {shlex.quote(value)} > {TOKEN_FILE_NAME} && "
        f"nuvem node join {head.address} --token-file {TOKEN_FILE_NAME}\n"
    )


def show_list(
    as_json: bool,
    everything: bool,
    address: str | None,
    token_file: Path | None,
    state_dir: Path | None,
) -> None:

    settings = settings_for(state_dir)
    if address is None or token_file is None:
        head = record.read_head(settings.state_dir)
        address = address or head.address
        token_file = token_file or Path(head.token_file)
    nodes = Membership(address, read_token(token_file)).nodes()
    if not everything:
        nodes = _latest(nodes)
    replicas, machines = _gateway_view(settings)
    # Pool machines that are no Ray node (yet, or any more): requested, provisioning,
    # failed; the removed ones with --all.
    joined = {node.labels.get(NODE_LABEL) for node in nodes if node.state is not NodeState.DEAD}
    waiting = [
        m
        for m in machines.values()
        if m["name"] not in joined and (everything or m["state"] != "removed")
    ]
    if as_json:
        listed = []
        for node in nodes:
            machine = machines.get(node.labels.get(NODE_LABEL, ""), {})
            listed.append(
                {
                    **node.as_dict(),
                    "containers": node.labels.get(CONTAINERS_LABEL, ""),
                    "replicas": replicas.get(node.address, []),
                    "pool": machine.get("pool", ""),
                    "lifecycle": machine.get("state", ""),
                }
            )
        print_json({"nodes": listed, "machines": waiting} if machines else listed)
        return
    table = Table(box=None, header_style="bold")
    columns = (
        "ADDRESS",
        "STATE",
        "POOL",
        "CPU",
        "GPU",
        "MEMORY",
        "CONTAINERS",
        "LABELS",
        "REPLICAS",
        "ID",
    )
    for column in columns:
        table.add_column(column)
    for node in nodes:
        used = _used(node)
        on_node = replicas.get(node.address, []) if node.state is not NodeState.DEAD else []
        pool_machine = machines.get(node.labels.get(NODE_LABEL, ""))
        table.add_row(
            f"{node.address} (head)" if node.head else node.address,
            node.state.value if not node.death else f"{node.state.value}: {node.death}",
            f"{pool_machine['name']} ({pool_machine['state']})" if pool_machine else "-",
            f"{used.cpu:g}/{node.total.cpu:g}",
            f"{used.gpu:g}/{node.total.gpu:g}",
            f"{used.memory / 2**30:.1f}/{node.total.memory / 2**30:.1f} GiB",
            node.labels.get(CONTAINERS_LABEL, "-"),
            ", ".join(f"{k}={v}" for k, v in node.labels.items() if k not in _OWN_LABELS),
            ", ".join(r["id"] for r in on_node) or "-",
            node.id[:12],
        )
    for machine in waiting:
        table.add_row(
            machine["address"] or "-",
            f"{machine['state']}: {machine['reason']}",
            machine["name"],
            "",
            "",
            "",
            "",
            "",
            "-",
            "",
        )
    out.print(table)


_OWN_LABELS = frozenset({NODE_LABEL, POOL_LABEL, CONTAINERS_LABEL})


def _gateway_view(
    settings: Settings,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """The replicas on each node and the pools' machines by name, from the gateway when
    one serves this state folder; none when it does not (the nodes come from the head
    either way)."""
    try:
        with Client(settings, timeout=3.0) as client:
            listed = client.call("GET", "/system/nodes")
            pools = client.call("GET", "/system/pools")
    except NuvemError:
        return {}, {}
    replicas = {node["address"]: node["replicas"] for node in listed}
    machines = {m["name"]: m for pool in pools["pools"] for m in pool["machines"]}
    return replicas, machines


def _latest(nodes: list[Node]) -> list[Node]:
    """One entry per address and port: the live node there, or else the last one that died
    (a node that rejoined leaves its earlier, dead self in the head's memory)."""
    newest = newest_by(nodes, lambda n: (n.address, n.port))
    return [node for node in nodes if newest[(node.address, node.port)] is node]


def _used(node: Node) -> Resources:
    if node.state is NodeState.DEAD:
        return Resources()
    return Resources(
        cpu=node.total.cpu - node.available.cpu,
        gpu=node.total.gpu - node.available.gpu,
        memory=node.total.memory - node.available.memory,
    )
