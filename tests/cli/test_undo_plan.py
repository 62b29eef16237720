"""What a failed bundle deploy undoes: updated functions that ran a bundle roll back, new
ones are removed, those from a folder deploy stay (nothing to return to), unchanged ones
are left alone."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nuvem.cli.undo_plan import Undo, UndoAction, undo_plan

BEFORE: dict[str, dict[str, Any]] = {
    "bundled": {"name": "bundled", "version": "1.0.0", "bundle": "ab" * 32},
    "folder": {"name": "folder", "version": None, "bundle": None},
    "same": {"name": "same", "version": "1.0.0", "bundle": "cd" * 32},
}


def test_each_change_is_undone_by_what_ran_before() -> None:
    changes = [
        {"name": "bundled", "change": "updated"},
        {"name": "folder", "change": "updated"},
        {"name": "same", "change": "unchanged"},
        {"name": "new", "change": "created"},
    ]
    assert undo_plan(changes, BEFORE) == [
        Undo("bundled", UndoAction.ROLLBACK, "1.0.0"),
        Undo("folder", UndoAction.KEEP, "it ran from a folder deploy: deploy that folder again"),
        Undo("new", UndoAction.REMOVE),
    ]


names = st.sampled_from(["a", "b", "c", "d", *BEFORE])
change_lists = st.lists(
    st.fixed_dictionaries(
        {"name": names, "change": st.sampled_from(["created", "updated", "unchanged"])}
    ),
    unique_by=lambda c: c["name"],
)


@given(change_lists)
def test_only_changed_functions_are_touched_and_new_ones_never_roll_back(
    changes: list[dict[str, str]],
) -> None:
    plan = undo_plan(changes, BEFORE)
    changed = [c["name"] for c in changes if c["change"] != "unchanged"]
    assert [step.name for step in plan] == changed
    for step in plan:
        assert (step.action is UndoAction.REMOVE) == (step.name not in BEFORE)
        if step.action is UndoAction.ROLLBACK:
            assert BEFORE[step.name]["bundle"]
