"""The reconcile decision, a pure function: its invariants under Hypothesis, and a rollout."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from nuvem.control.replica_plan import (
    MOVED,
    REPLACED,
    SCALED_DOWN,
    DeploymentView,
    ReplicaPlan,
    ReplicaView,
    Retirement,
    plan,
)


@st.composite
def views(draw: st.DrawFn) -> DeploymentView:
    count = draw(st.integers(0, 10))
    replicas = tuple(
        ReplicaView(f"r{i}", draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 8)))
        for i in range(count)
    )
    return DeploymentView(
        desired=draw(st.integers(0, 8)),
        replicas=replicas,
        starting=draw(st.integers(0, 4)),
        retry_at=draw(st.floats(0, 10)),
        now=draw(st.floats(0, 10)),
        surge=draw(st.integers(1, 8)),
    )


def retired(view: DeploymentView, decided: ReplicaPlan) -> list[ReplicaView]:
    ids = {r.replica for r in decided.retire}
    return [r for r in view.replicas if r.id in ids]


@given(views())
def test_retires_each_replica_of_the_view_at_most_once(view: DeploymentView) -> None:
    decided = plan(view)
    ids = [r.replica for r in decided.retire]
    assert len(ids) == len(set(ids))
    assert set(ids) <= {r.id for r in view.replicas}
    assert decided.start >= 0


@given(views())
def test_no_start_before_the_back_off_ends(view: DeploymentView) -> None:
    if view.now < view.retry_at:
        assert plan(view).start == 0


@given(views())
def test_never_more_than_desired_plus_surge_alive_or_starting(view: DeploymentView) -> None:
    decided = plan(view)
    if decided.start:
        assert len(view.replicas) + view.starting + decided.start <= view.desired + view.surge


@given(views())
def test_starts_only_what_is_missing(view: DeploymentView) -> None:
    current = sum(r.current for r in view.replicas)
    assert plan(view).start <= max(0, view.desired - current - view.starting)


@given(views())
def test_keeps_as_many_ready_as_desired(view: DeploymentView) -> None:
    # In particular a rolling update never retires the last ready replica: outdated ones
    # go only while enough others are ready.
    ready = sum(r.ready for r in view.replicas)
    gone = sum(r.ready for r in retired(view, plan(view)))
    assert ready - gone >= min(view.desired, ready)


@given(views())
def test_outdated_replicas_go_only_when_enough_others_are_ready(view: DeploymentView) -> None:
    decided = plan(view)
    reasons = {r.replica: r.reason for r in decided.retire}
    ready = sum(r.ready for r in view.replicas)
    for replica in view.replicas:
        if replica.id in reasons:
            assert reasons[replica.id] == (SCALED_DOWN if replica.current else REPLACED)
        if not replica.current and replica.ready and replica.id in reasons:
            gone = sum(r.ready for r in retired(view, decided))
            assert ready - gone >= view.desired


@given(views())
def test_scaling_down_retires_the_least_busy(view: DeploymentView) -> None:
    decided = plan(view)
    down = {r.replica for r in decided.retire if r.reason == SCALED_DOWN}
    ready = [r for r in view.replicas if r.current and r.ready]
    gone = [r.inflight for r in ready if r.id in down]
    kept = [r.inflight for r in ready if r.id not in down]
    if gone and kept:
        assert max(gone) <= min(kept)


@given(views())
def test_a_steady_deployment_converges(view: DeploymentView) -> None:
    """Carry out every plan (starts become current replicas, starting ones become ready):
    it reaches the desired count of current replicas, none outdated, in a few steps."""
    names = (f"new{i}" for i in itertools.count())
    replicas = list(view.replicas)
    starting = view.starting
    for _ in range(2 * (len(replicas) + view.desired) + 4):
        step = DeploymentView(view.desired, tuple(replicas), starting, 0.0, 1.0, view.surge)
        decided = plan(step)
        gone = {r.replica for r in decided.retire}
        replicas = [replace(r, ready=True) for r in replicas if r.id not in gone]
        replicas += [ReplicaView(next(names), True, True, 0) for _ in range(starting)]
        starting = decided.start
    assert starting == 0
    assert all(r.current and r.ready for r in replicas)
    assert len(replicas) == view.desired


def test_a_rolling_update_replaces_old_replicas_as_new_ones_are_ready() -> None:
    old = (ReplicaView("a", False, True, 3), ReplicaView("b", False, True, 0))
    first = plan(DeploymentView(2, old, 0, 0.0, 1.0, surge=2))
    assert first == ReplicaPlan(start=2)
    one_ready = (*old, ReplicaView("c", True, True, 0), ReplicaView("d", True, False, 0))
    second = plan(DeploymentView(2, one_ready, 0, 0.0, 1.0, surge=2))
    assert [(r.replica, r.reason) for r in second.retire] == [("b", REPLACED)]  # least busy
    both = (old[0], ReplicaView("c", True, True, 0), ReplicaView("d", True, True, 0))
    assert [r.replica for r in plan(DeploymentView(2, both, 0, 0.0, 1.0, 2)).retire] == ["a"]


def test_a_new_spec_that_does_not_start_leaves_the_old_replicas_serving() -> None:
    old = (ReplicaView("a", False, True, 0),)
    waiting = plan(DeploymentView(1, old, 0, retry_at=5.0, now=1.0, surge=1))
    assert waiting == ReplicaPlan()


def test_scaling_down_during_a_start_keeps_the_ready_replica() -> None:
    ready = (ReplicaView("a", True, True, 0),)
    assert plan(DeploymentView(1, ready, 1, 0.0, 1.0, 1)) == ReplicaPlan()


def test_a_replica_on_a_draining_node_moves_before_it_goes() -> None:
    on_leaving_node = ReplicaView("old", current=False, ready=True, inflight=2, moving=True)
    view = DeploymentView(
        desired=1, replicas=(on_leaving_node,), starting=0, retry_at=0, now=1, surge=1
    )
    # First a replacement elsewhere; the replica keeps serving meanwhile.
    assert plan(view) == ReplicaPlan(start=1, retire=())
    while_starting = replace(view, starting=1)
    assert plan(while_starting) == ReplicaPlan(start=0, retire=())
    moved = replace(view, replicas=(on_leaving_node, ReplicaView("new", True, True, 0)))
    assert plan(moved) == ReplicaPlan(start=0, retire=(Retirement("old", MOVED),))
