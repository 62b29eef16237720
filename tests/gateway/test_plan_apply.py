"""`nuvem plan`, `apply` and `destroy` (the installed CLI, in processes of their own) against
a real gateway with real workers; pools through a node tier on a fake provider, whose
machines join a fake cluster as soon as they are made."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent

import pytest

from nuvem.cluster.membership import Node, NodeState, Resources
from nuvem.control.node_plan import NodeLifecycle
from nuvem.control.node_tier import NodeTier
from nuvem.control.pool_book import PoolBook
from nuvem.providers.fake import FakeProvider
from nuvem.providers.provider import JoinInfo
from nuvem.stack.pools import NODE_LABEL
from support import Nuvem, Running, serving, wait_until

pytestmark = pytest.mark.anyio

STACK = """\
cluster: {engine: ray}
functions:
  echo:
    handler: handlers:echo
    env: {MODE: file}
  version:
    handler: handlers:version
pools:
  cpu:
    min: 1
    max: 3
    node: {cpus: 2, memory: 4Gi}
"""


@dataclass
class JoiningCluster:
    """Every machine the provider holds is a live node, unless the test killed it."""

    provider: FakeProvider
    killed: set[str] = field(default_factory=set)  # provider ids: a new machine lives
    seen: dict[str, float] = field(default_factory=dict)
    drained: list[str] = field(default_factory=list)

    def nodes(self) -> list[Node]:
        found = []
        for pool, machines in self.provider._machines.items():
            for name, machine in machines.items():
                started = self.seen.setdefault(machine.id, time.time())
                total = Resources(cpu=2, gpu=0, memory=4 * 2**30)
                dead = machine.id in self.killed
                found.append(
                    Node(
                        id=machine.id,
                        address=machine.address,
                        port=1000,
                        name=name,
                        head=False,
                        state=NodeState.DEAD if dead else NodeState.ALIVE,
                        labels={"nuvem.dev/pool": pool, NODE_LABEL: name},
                        total=total,
                        available=total,
                        started_at=started,
                        ended_at=None,
                        death="killed by hand" if dead else "",
                    )
                )
        return found

    def kill(self, name: str) -> str:
        """Kill machine `name` as if by hand; returns its id."""
        [machine] = [m[name] for m in self.provider._machines.values() if name in m]
        self.killed.add(machine.id)
        return machine.id

    def drain(self, node: Node, reason: str, deadline: float) -> None:
        self.drained.append(node.name)

    def join_info(self) -> JoinInfo:
        return JoinInfo("127.0.0.1:6379", "secret")


@dataclass
class Rig:
    gateway: Running
    nuvem: Nuvem
    provider: FakeProvider
    cluster: JoiningCluster
    file: Path

    async def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        # In a thread: the gateway answering the command runs on this event loop.
        return await asyncio.to_thread(self.nuvem.run, *args, check=False, input=stdin)

    async def plan(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await self.cli("plan", "-f", str(self.file), *args)

    async def apply(self) -> subprocess.CompletedProcess[str]:
        done = await self.cli("apply", "-f", str(self.file), "--timeout", "60")
        assert done.returncode == 0, done.stderr
        return done

    def write(self, text: str) -> None:
        self.file.write_text(dedent(text))


@pytest.fixture
async def rig(tmp_path: Path, handlers_dir: Path) -> AsyncIterator[Rig]:
    async with serving(handlers_dir, tmp_path / "state") as gateway:
        provider = FakeProvider()
        cluster = JoiningCluster(provider)
        controller = gateway.platform.controller
        controller.node_tier = NodeTier(
            {}, provider, cluster, PoolBook(None), controller.pool_event
        )
        nuvem = Nuvem(tmp_path, env={"NUVEM_URL": gateway.url})
        file = handlers_dir / "nuvem.yaml"
        file.write_text(STACK)
        yield Rig(gateway, nuvem, provider, cluster, file)


async def test_plan_apply_plan_is_empty_then_an_edit_plans_its_diff(rig: Rig) -> None:
    first = await rig.plan()
    assert first.returncode == 2, first.stderr
    assert "+ function echo" in first.stdout
    assert "+ pool cpu" in first.stdout
    assert "+ machine cpu-1 (create)" in first.stdout
    assert "3 to add, 0 to change, 0 to remove" in first.stdout

    applied = await rig.apply()
    assert "Apply complete" in applied.stderr
    assert "echo: 1/1 replicas ready" in applied.stderr
    assert set(_tier(rig).pools) == {"cpu"}

    again = await rig.plan()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes." in again.stdout

    # The pool makes cpu-1 by itself; once joined the plan stays empty.
    await wait_until(lambda: _states(rig) == {"cpu-1": "joined"}, what="cpu-1 joined")
    assert (await rig.plan()).returncode == 0

    rig.write(STACK.replace("MODE: file", "MODE: edited").replace("max: 3", "max: 4"))
    edited = await rig.plan()
    assert edited.returncode == 2
    assert "~ function echo  (changed in the file)" in edited.stdout
    assert '~ env.MODE: "file" → "edited"' in edited.stdout
    assert "~ pool cpu" in edited.stdout
    assert "~ max: 3 → 4" in edited.stdout
    as_json = json.loads((await rig.plan("--json")).stdout)
    assert (as_json["change"], as_json["changes"]) == (2, True)
    [echo] = as_json["functions"]
    assert echo["fields"] == [{"path": "env.MODE", "old": "file", "new": "edited"}]

    await rig.apply()
    assert rig.gateway.platform.controller.get("echo").spec.env == {"MODE": "edited"}
    assert (await rig.plan()).returncode == 0


async def test_a_change_through_the_api_is_drift_and_scaling_is_not(rig: Rig) -> None:
    await rig.apply()
    admin = rig.gateway.admin
    scaled = await admin.post("/system/scale-function/version", json={"replicas": 2})
    assert scaled.status_code == 202
    assert (await rig.plan()).returncode == 0  # a count, not a spec: no drift

    spec = (await admin.get("/system/function/echo")).json()["spec"]
    spec["env"] = {"MODE": "api"}
    assert (await admin.put("/system/functions", json=spec)).status_code == 202
    drifted = await rig.plan()
    assert drifted.returncode == 2
    assert "changed since the last apply, through the API or another deploy" in drifted.stdout
    assert '~ env.MODE: "api" → "file"' in drifted.stdout
    assert "1 drifted" in drifted.stdout

    removed = await admin.delete("/system/function/version")
    assert removed.status_code == 202
    gone = await rig.plan()
    assert "removed through the API since the last apply" in gone.stdout

    await rig.apply()
    assert rig.gateway.platform.controller.get("echo").spec.env == {"MODE": "file"}
    assert (await rig.plan()).returncode == 0


async def test_a_machine_killed_by_hand_is_drift_until_the_next_apply(rig: Rig) -> None:
    await rig.apply()
    await wait_until(lambda: _states(rig) == {"cpu-1": "joined"}, what="cpu-1 joined")
    old_id = rig.cluster.kill("cpu-1")
    lost = await rig.plan("--json")
    assert lost.returncode == 2
    [pool] = json.loads(lost.stdout)["pools"]
    assert [d["node"] for d in pool["drift"]] == ["cpu-1"]
    assert "killed by hand" in pool["drift"][0]["reason"]
    # The tier replaces it by itself; the failure stays drift until an apply acknowledges it.
    await wait_until(lambda: _replaced(rig, old_id), what="a machine in place of cpu-1")
    shown = await rig.plan()
    assert shown.returncode == 2
    assert "failed or was lost since the last apply" in shown.stdout
    await rig.apply()
    assert (await rig.plan()).returncode == 0


async def test_destroy_removes_the_functions_and_the_machines(rig: Rig) -> None:
    await rig.apply()
    await wait_until(lambda: _states(rig) == {"cpu-1": "joined"}, what="cpu-1 joined")
    refused = await rig.cli("destroy", "-f", str(rig.file), stdin="n\n")
    assert refused.returncode == 1
    assert set(rig.gateway.platform.controller.deployments) == {"echo", "version"}

    done = await rig.cli("destroy", "-f", str(rig.file), "--yes")
    assert done.returncode == 0, done.stderr
    assert "Destroy complete" in done.stderr
    assert rig.gateway.platform.controller.deployments == {}
    assert rig.provider.destroyed == ["cpu"]
    assert rig.cluster.drained == ["cpu-1"]
    assert _states(rig) == {"cpu-1": "removed"}
    # Nothing of the file runs: everything is new again, not drift.
    after = await rig.plan("--json")
    plan = json.loads(after.stdout)
    assert (plan["add"], plan["drift"]) == (3, 0)


async def test_pools_need_a_node_tier(tmp_path: Path, handlers_dir: Path) -> None:
    async with serving(handlers_dir, tmp_path / "state") as gateway:
        body = {"pools": {"cpu": {"max": 2}}}
        for method, path in (("PUT", "/system/pools"), ("POST", "/system/pools/plan")):
            answer = await gateway.admin.request(method, path, json=body)
            assert answer.status_code == 409
            assert "runs no Ray cluster" in answer.json()["error"]
            assert "cluster: {engine: ray}" in answer.json()["error"]
        assert (await gateway.admin.post("/system/pools/plan", json={"pools": {}})).json() == {
            "pools": []
        }
        nuvem = Nuvem(tmp_path, env={"NUVEM_URL": gateway.url})
        file = handlers_dir / "nuvem.yaml"
        file.write_text(STACK)
        failed = await asyncio.to_thread(nuvem.run, "plan", "-f", str(file), check=False)
        assert failed.returncode == 1  # an error, never 2: that means "changes"
        assert "runs no Ray cluster" in failed.stderr


async def test_the_pool_routes_answer_errors_that_name_the_fix(rig: Rig) -> None:
    admin = rig.gateway.admin
    unknown = await admin.delete("/system/pools/gpu")
    assert unknown.status_code == 404
    assert "pool 'gpu' is not known" in unknown.json()["error"]
    bad = await admin.put("/system/pools", json={"pools": {"cpu": {"min": 3, "max": 1}}})
    assert bad.status_code == 400
    assert "min (3) is above max (1)" in bad.json()["error"]
    stale = await admin.put("/system/stack/applied", json={"functions": {"echo": "0" * 16}})
    assert stale.status_code == 404  # not deployed
    schema = (await admin.get("/openapi.json")).json()["paths"]
    assert {"/system/pools", "/system/pools/plan", "/system/pools/{name}"} <= set(schema)
    assert {"/system/stack", "/system/stack/applied"} <= set(schema)


async def test_plan_previews_machines_without_making_them(rig: Rig) -> None:
    admin = rig.gateway.admin
    body = {"pools": {"cpu": {"min": 2, "max": 3, "warm": 1}}}
    answer = (await admin.post("/system/pools/plan", json=body)).json()
    [pool] = answer["pools"]
    assert (pool["live"], pool["underway"]) == (None, [])
    # min 2; the two coming are spare, so warm 1 asks for no third.
    assert [(m["node"], m["kind"]) for m in pool["planned"]] == [
        ("cpu-1", "create"),
        ("cpu-2", "create"),
    ]
    assert rig.provider.applied == []
    assert (await admin.put("/system/pools", json=body)).status_code == 200
    both = {"cpu-1": "joined", "cpu-2": "joined"}
    await wait_until(lambda: _states(rig) == both, what="two machines joined")
    smaller = {"pools": {"cpu": {"min": 0, "max": 1}}}
    [shrunk] = (await admin.post("/system/pools/plan", json=smaller)).json()["pools"]
    assert [m["kind"] for m in shrunk["planned"]] == ["delete"]  # over max: one goes
    bigger = {"pools": {"cpu": {"min": 2, "max": 3, "warm": 1, "node": {"cpus": 4}}}}
    [reshaped] = (await admin.post("/system/pools/plan", json=bigger)).json()["pools"]
    assert [m["kind"] for m in reshaped["planned"]] == ["replace", "replace"]
    assert reshaped["underway"] == []


def _tier(rig: Rig) -> NodeTier:
    tier = rig.gateway.platform.controller.node_tier
    assert tier is not None
    return tier


def _states(rig: Rig) -> dict[str, str]:
    return {m.name: m.state.value for m in _tier(rig).book if m.pool == "cpu"}


def _replaced(rig: Rig, old_id: str) -> bool:
    """The machine of node `old_id` is removed, another joined in its place."""
    machines = list(_tier(rig).book)
    joined = [m for m in machines if m.state is NodeLifecycle.JOINED]
    return bool(joined) and all(
        m.state is NodeLifecycle.REMOVED for m in machines if m.node_id == old_id
    )
