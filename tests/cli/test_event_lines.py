"""`nuvem events` keeps one event on one line; the whole of it is behind --detail."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nuvem.cli.events import full, line

BUILD_LOG = "building the environment of boom failed:\n" + "\n".join(
    f"  x No solution found when resolving dependencies (line {n})" for n in range(40)
)


def event(message: str, **data: Any) -> dict[str, Any]:
    return {
        "id": 17,
        "time": 1_800_000_000.0,
        "kind": "deploy_failed",
        "function": "boom",
        "message": message,
        "data": data,
    }


def test_a_multi_line_message_is_one_line_that_points_at_its_detail() -> None:
    shown = line(event(BUILD_LOG))
    assert "\n" not in shown
    assert "building the environment of boom failed:" in shown
    assert shown.endswith(" …(+40 lines)")


def test_a_long_line_is_cut_to_the_terminal_and_still_points_at_its_detail() -> None:
    shown = line(event("x" * 300), width=80)
    assert len(shown) <= 80
    assert shown.endswith("x…")


def test_detail_shows_the_whole_message_and_its_data() -> None:
    shown = full(event(BUILD_LOG, cause="resolution", attempts=1))
    assert BUILD_LOG in shown
    assert "cause     resolution" in shown
    assert "function  boom" in shown


@given(st.text(), st.integers(min_value=20, max_value=300))
def test_any_message_is_one_line_within_the_width(message: str, width: int) -> None:
    shown = line(event(message), width=width)
    assert "\n" not in shown
    assert "\r" not in shown
    # Below about 80 columns the head and the pointer alone are wider: those still fit 80.
    assert len(shown) <= max(width, 80)
