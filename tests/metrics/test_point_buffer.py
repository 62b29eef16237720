"""The bounded buffer: the oldest waiting lines go first, lines in flight never."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nuvem.metrics.point_buffer import PointBuffer


def lines(*numbers: int) -> list[str]:
    return [f"m v={n}" for n in numbers]


def test_beyond_the_limit_the_oldest_go_and_are_counted() -> None:
    buffer = PointBuffer(3)
    assert buffer.add(lines(1, 2)) == 0
    assert buffer.add(lines(3, 4, 5)) == 2
    assert buffer.peek(10) == lines(3, 4, 5)
    assert buffer.dropped == 2


def test_a_batch_in_flight_is_never_pushed_out() -> None:
    buffer = PointBuffer(4)
    buffer.add(lines(1, 2, 3, 4))
    assert buffer.take(2) == lines(1, 2)
    assert buffer.add(lines(5, 6)) == 2  # 3 and 4, the oldest waiting
    assert buffer.peek(10) == lines(1, 2, 5, 6)
    buffer.done()
    assert buffer.peek(10) == lines(5, 6)


def test_a_failed_batch_goes_back_in_front() -> None:
    buffer = PointBuffer(3)
    buffer.add(lines(1, 2, 3))
    buffer.take(2)
    assert buffer.add(lines(4, 5)) == 2  # the batch in flight counts: 3 and 4 go
    buffer.give_back()
    assert buffer.peek(10) == lines(1, 2, 5)
    assert buffer.waiting == 3
    assert buffer.dropped == 2


def test_one_batch_at_a_time() -> None:
    buffer = PointBuffer(5)
    buffer.add(lines(1, 2))
    buffer.take(1)
    with pytest.raises(RuntimeError, match="in flight"):
        buffer.take(1)


def test_a_buffer_holds_at_least_one_point() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PointBuffer(0)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 9)),
        st.tuples(st.just("take"), st.integers(1, 6)),
        st.tuples(st.just("done"), st.just(0)),
        st.tuples(st.just("give_back"), st.just(0)),
    ),
    max_size=40,
)


@given(st.integers(1, 8), operations)
def test_every_line_is_kept_finished_or_counted_as_dropped(
    limit: int, steps: list[tuple[str, int]]
) -> None:
    buffer = PointBuffer(limit)
    added = finished = 0
    next_line = 0
    for op, n in steps:
        if op == "add":
            buffer.add(lines(*range(next_line, next_line + n)))
            next_line += n
            added += n
        elif op == "take" and len(buffer) == buffer.waiting:  # nothing in flight yet
            buffer.take(n)
        elif op == "done":
            finished += len(buffer) - buffer.waiting
            buffer.done()
        elif op == "give_back":
            buffer.give_back()
        assert len(buffer) <= limit
        kept = [int(line.split("=")[1]) for line in buffer.peek(limit)]
        assert kept == sorted(kept)  # oldest first, those in flight before those waiting
    assert added == finished + buffer.dropped + len(buffer)
