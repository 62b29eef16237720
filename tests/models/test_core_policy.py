"""The core policy's invariants: a lone replica takes every core, busy ones share them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nuvem.models.core_policy import SLACK, threads_for

cores = st.integers(min_value=1, max_value=512)
busy = st.integers(min_value=0, max_value=1024)


@given(cores)
def test_a_lone_busy_replica_takes_every_core(n: int) -> None:
    assert threads_for(n, 1) == n
    assert threads_for(n, 0) == n  # a ledger that missed its own mark still means alone


@given(cores, busy)
def test_every_replica_gets_a_thread_and_no_more_than_the_cores(n: int, b: int) -> None:
    assert 1 <= threads_for(n, b) <= n


@given(cores, st.integers(min_value=2, max_value=1024))
def test_busy_replicas_together_never_outnumber_the_cores(n: int, b: int) -> None:
    # One thread each is the floor: with more replicas than cores the OS shares them out.
    assert threads_for(n, b) * b <= max(n, b)


@given(cores, busy)
def test_more_busy_replicas_never_get_more_threads(n: int, b: int) -> None:
    assert threads_for(n, b + 1) <= threads_for(n, b)


def test_two_cores_two_busy_replicas_one_thread_each() -> None:
    assert threads_for(2, 2) == 1
    assert threads_for(8, 3) == 2


@given(cores, st.floats(min_value=0, max_value=1024))
def test_a_lone_replica_takes_only_the_cores_others_leave_idle(n: int, others: float) -> None:
    threads = threads_for(n, 1, others)
    assert 1 <= threads <= n
    assert threads <= max(1, n - others + SLACK)


@given(cores, st.floats(min_value=0, max_value=512), st.floats(min_value=0, max_value=512))
def test_busier_neighbours_never_give_more_threads(n: int, a: float, b: float) -> None:
    assert threads_for(n, 1, max(a, b)) <= threads_for(n, 1, min(a, b))


def test_a_neighbour_on_one_of_two_cores_keeps_a_lone_replica_at_one_thread() -> None:
    assert threads_for(2, 1, 0.1) == 2  # the gateway's share of a lone call
    assert threads_for(2, 1, 0.9) == 1
    assert threads_for(2, 2, 0.0) == 1
