"""A real Ray cluster on this one machine for the tests: a head and two worker nodes.

Each node has an address of its own on loopback (127.0.0.2 and up: Ray swaps 127.0.0.1
for the machine's address), its own ports and worker range, the dashboard off and a
small object store. The head is started the way `nuvem up` starts it, from a stack's
`cluster:` block, so its state folder holds the token and the head record as a gateway's
would. One cluster serves the whole session; everything is stopped by PID at the end.

When Ray is not installed the tests that need it skip with the reason, except when the
environment variable CI is set: then they fail, so CI never passes by skipping.
Loaded as a pytest plugin (`-p ray_cluster` in pyproject.toml).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nuvem.cluster.head import running_head
from nuvem.cluster.membership import Membership
from nuvem.cluster.node import RayNode
from nuvem.cluster.options import HeadOptions, JoinOptions, Offer, plan
from nuvem.cluster.ports import free_ports
from nuvem.cluster.token import read_token
from nuvem.stack.container import CONTAINERS_LABEL
from nuvem.stack.loader import load_stack_text
from servers import missing


def _worker_number() -> int:
    """pytest-xdist's worker, 0 for gw0 and without xdist: each worker's nodes get their
    own loopback addresses (127.0.W.x) and worker ports, apart from the other workers'."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


_NET = f"127.0.{_worker_number()}"
HEAD_IP = f"{_NET}.2"
NODE_IPS = (f"{_NET}.3", f"{_NET}.4")
SMALL_STORE = "80Mi"  # Ray's minimum is 75Mi; the default would take 30% of RAM per node
_extra_ips = (f"{_NET}.{n}" for n in range(10, 255))
# Below the kernel's ephemeral ports (32768 and up) and the pools' ranges of
# tests/cluster/test_pools_loop.py (30000 and up): 4000 ports, 20 nodes, per worker.
_FIRST_PORT = 10000 + 4000 * _worker_number()
_worker_ranges = ((first, first + 199) for first in range(_FIRST_PORT, _FIRST_PORT + 4000, 200))


def next_ip() -> str:
    """A loopback address no node of this session has used yet."""
    return next(_extra_ips)


def worker_range() -> tuple[int, int]:
    """Worker ports for one more node, apart from every other node's."""
    return next(_worker_ranges)


@dataclass
class RayCluster:
    state_dir: Path  # the head's state folder: token, head record and logs
    address: str  # the head's HOST:PORT
    token_file: Path
    nodes: list[RayNode]  # the worker nodes, in the order of NODE_IPS

    def membership(self) -> Membership:
        return Membership(self.address, read_token(self.token_file))


def need_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        missing("Ray", "run `make install`, or pip install 'nuvem[ray]'")


# The cluster ends as soon as the last test that uses it has run, not at the end of the
# session: the rest of the suite should not share two cores with five idle Ray processes.
_users_left = 0
_running = contextlib.ExitStack()


def pytest_collection_finish(session: pytest.Session) -> None:
    global _users_left
    _users_left = sum("ray_cluster" in getattr(item, "fixturenames", ()) for item in session.items)


@pytest.hookimpl(trylast=True)  # after the test's own fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    global _users_left
    if "ray_cluster" in getattr(item, "fixturenames", ()):
        _users_left -= 1
        if _users_left <= 0:
            _running.close()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    need_ray()
    # Short paths: Ray's Unix sockets live under its temp folder, and those are limited
    # to 107 characters.
    root = Path(tempfile.mkdtemp(prefix="nuvem-ray-", dir="/tmp"))
    _running.callback(shutil.rmtree, root, ignore_errors=True)
    try:
        yield _running.enter_context(contextlib.contextmanager(_cluster)(root))
    finally:
        _running.close()


def _cluster(root: Path) -> Iterator[RayCluster]:
    state = root / "state"
    stack = load_stack_text(
        textwrap.dedent(
            f"""
            cluster:
              engine: ray
              node_ip: {HEAD_IP}
              port: {free_ports(1)[0]}
              cpus: 1
              object_store_memory: {SMALL_STORE}
            """
        ),
        "nuvem.yaml",
        root,
    )
    options = plan(stack.cluster, state)
    assert isinstance(options, HeadOptions)
    options = dataclasses.replace(options, temp_dir=root / "ray", workers=worker_range())
    with running_head(options, state) as address:
        assert address is not None
        joins = [
            JoinOptions(
                address,
                options.token_file,
                node_ip=ip,
                offer=Offer(
                    cpus=1,
                    gpus=2 if n == 0 else None,
                    memory=2**30,
                    object_store_memory=options.offer.object_store_memory,
                    # Only the first node says it runs containers: image functions go there.
                    labels={"zone": "a" if n == 0 else "b", "rack": str(n)}
                    | ({CONTAINERS_LABEL: "podman"} if n == 0 else {}),
                ),
                workers=worker_range(),
                temp_dir=root / f"ray-{n}",  # their own sockets, so both may start at once
            )
            for n, ip in enumerate(NODE_IPS)
        ]
        nodes: list[RayNode | None] = [None] * len(joins)
        errors: list[BaseException] = []

        def join(n: int) -> None:
            try:
                nodes[n] = RayNode.join(joins[n], root / f"node-{n}.log")
            except BaseException as exc:
                errors.append(exc)

        # Both at once: each spends most of its start waiting on its own processes.
        threads = [threading.Thread(target=join, args=(n,)) for n in range(len(joins))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            if errors:
                raise errors[0]
            yield RayCluster(state, address, options.token_file, [n for n in nodes if n])
        finally:
            for node in nodes:
                if node is not None:
                    node.kill()
