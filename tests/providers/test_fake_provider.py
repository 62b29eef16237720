"""The in-memory provider the node tier's tests use: it answers like a provider should."""

from __future__ import annotations

import asyncio

import pytest

from nuvem.providers.fake import FakeProvider
from nuvem.providers.provider import (
    ChangeKind,
    JoinInfo,
    NodeProvider,
    NodeRequest,
    ProviderFailed,
    ProviderProgress,
)
from nuvem.stack.pools import PoolSpec

pytestmark = pytest.mark.anyio

POOL = PoolSpec(name="cpu", max=5)
JOIN = JoinInfo(address="10.0.0.5:6379", token="t" * 64)


def request(pool: PoolSpec, index: int) -> NodeRequest:
    name = f"{pool.name}-{index}"
    return NodeRequest(index, 1, 2**31, 0, pool.node_labels(name))


def nodes(*indexes: int) -> dict[str, NodeRequest]:
    return {f"cpu-{i}": request(POOL, i) for i in indexes}


async def test_apply_makes_exactly_the_nodes_asked_for() -> None:
    fake = FakeProvider()
    provider: NodeProvider = fake  # it honours the protocol
    first = await provider.apply(POOL, nodes(1, 2), JOIN)
    assert set(first.machines) == {"cpu-1", "cpu-2"}
    assert first.machines["cpu-1"].address == "10.200.0.2"
    second = await provider.apply(POOL, nodes(2, 3), JOIN)
    assert set(second.machines) == {"cpu-2", "cpu-3"}
    assert second.machines["cpu-2"] == first.machines["cpu-2"]  # untouched
    assert await provider.machines(POOL) == second.machines
    assert fake.node_sets("cpu") == [{"cpu-1", "cpu-2"}, {"cpu-2", "cpu-3"}]


async def test_a_recreated_node_gets_a_new_id() -> None:
    fake = FakeProvider()
    before = (await fake.apply(POOL, nodes(1), JOIN)).machines["cpu-1"].id
    await fake.apply(POOL, {}, JOIN)
    after = (await fake.apply(POOL, nodes(1), JOIN)).machines["cpu-1"].id
    assert before != after


async def test_failing_applies_raise_the_diagnostic_and_keep_the_truth() -> None:
    fake = FakeProvider()
    await fake.apply(POOL, nodes(1), JOIN)
    fake.fail_next(2, "Error: quota exceeded", create=1)
    # each failed apply makes one node and removes none, as Terraform stopping part way
    for made in ({"cpu-1", "cpu-2"}, {"cpu-1", "cpu-2", "cpu-3"}):
        with pytest.raises(ProviderFailed, match="quota exceeded"):
            await fake.apply(POOL, nodes(2, 3), JOIN)
        assert set(await fake.machines(POOL)) == made
    assert [applied.failed for applied in fake.applied] == [False, True, True]
    result = await fake.apply(POOL, nodes(2, 3), JOIN)
    assert set(result.machines) == {"cpu-2", "cpu-3"}


async def test_plan_says_what_apply_would_change() -> None:
    fake = FakeProvider()
    assert [(c.kind, c.node) for c in await fake.plan(POOL, nodes(1), JOIN)] == [
        (ChangeKind.CREATE, "cpu-1")
    ]
    await fake.apply(POOL, nodes(1, 2), JOIN)
    assert await fake.plan(POOL, nodes(1, 2), JOIN) == []
    bigger = {**nodes(1), "cpu-2": NodeRequest(2, 4, 2**32, 0, POOL.node_labels("cpu-2"))}
    changes = await fake.plan(POOL, bigger, JOIN)
    assert [(c.kind, c.node) for c in changes] == [(ChangeKind.REPLACE, "cpu-2")]
    changes = await fake.plan(POOL, nodes(2), JOIN)
    assert [(c.kind, c.node) for c in changes] == [(ChangeKind.DELETE, "cpu-1")]
    assert len(fake.applied) == 1  # plan changes nothing


async def test_held_applies_run_one_at_a_time_per_pool() -> None:
    fake = FakeProvider()
    fake.hold()
    lines: list[ProviderProgress] = []
    first = asyncio.ensure_future(fake.apply(POOL, nodes(1), JOIN, lines.append))
    second = asyncio.ensure_future(fake.apply(POOL, nodes(1, 2), JOIN, lines.append))
    await asyncio.sleep(0)
    assert fake.running == 1
    assert not fake.applied
    fake.release()
    await asyncio.gather(first, second)
    assert fake.node_sets("cpu") == [{"cpu-1"}, {"cpu-1", "cpu-2"}]
    assert [line.resource for line in lines] == [
        'fake_node.node["cpu-1"]',
        'fake_node.node["cpu-2"]',
    ]


async def test_destroy_removes_every_machine_of_the_pool() -> None:
    fake = FakeProvider()
    other = PoolSpec(name="gpu", max=2)
    await fake.apply(POOL, nodes(1, 2), JOIN)
    await fake.apply(other, {"gpu-1": request(other, 1)}, JOIN)
    await fake.destroy(POOL)
    assert await fake.machines(POOL) == {}
    assert set(await fake.machines(other)) == {"gpu-1"}
    assert fake.destroyed == ["cpu"]
