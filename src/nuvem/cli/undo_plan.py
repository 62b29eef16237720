"""What a failed bundle deploy undoes (`nuvem deploy --rollback-on-failure`): decided purely
from what the gateway ran before and what the deploy changed, carried out by the caller."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class UndoAction(enum.Enum):
    ROLLBACK = "rollback"  # it ran a bundle before: back to that one (a rolling update)
    REMOVE = "remove"  # it did not exist before this deploy
    KEEP = "keep"  # it ran from a folder deploy, of which the gateway keeps no copy


@dataclass(frozen=True, slots=True)
class Undo:
    name: str
    action: UndoAction
    # The version it goes back to (ROLLBACK), or why it cannot (KEEP).
    detail: str = ""


def undo_plan(
    changes: Iterable[Mapping[str, Any]], before: Mapping[str, Mapping[str, Any]]
) -> list[Undo]:
    """One step per function the deploy created or updated (`changes` as the gateway's
    deploy answer lists them; `before`: `/system/functions` by name, read before it)."""
    plan = []
    for change in changes:
        name = str(change["name"])
        if change["change"] == "unchanged":
            continue
        previous = before.get(name)
        if previous is None:
            plan.append(Undo(name, UndoAction.REMOVE))
        elif previous.get("bundle"):
            plan.append(Undo(name, UndoAction.ROLLBACK, str(previous.get("version") or "")))
        else:
            plan.append(
                Undo(name, UndoAction.KEEP, "it ran from a folder deploy: deploy that folder again")
            )
    return plan
