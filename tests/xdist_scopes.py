"""How `make test` shares the tests out between pytest-xdist workers: a module's tests go to
one worker together, so its module-scoped fixtures (a gateway, a cluster, built images)
start once, not once per worker; and tests given an `xdist_group` go to one worker together
across modules (the session's Ray cluster starts once; the podman image builds do not take
both cores at a time).

pytest-xdist 3.8.0's `--dist loadgroup` names an item's group by assigning `item._nodeid`,
which pytest 9 no longer reads (its node ids live in `_id`, a NodeId): every group was
silently ignored and each test went to whichever worker was free. `suffix_groups` names the
group in the node id itself, as xdist means to (`path::test@group`), and `ModuleOrGroup`
schedules by that group, else by module.
"""

from __future__ import annotations

from typing import Any

import pytest
from _pytest.nodeid import NodeId
from xdist.scheduler import LoadScopeScheduling


def group_of(item: pytest.Item) -> str | None:
    names = sorted(
        {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
    )
    return "_".join(names) or None


def suffix_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker of a `--dist loadgroup` run, `@group` ends each grouped item's node id:
    the id is all the controller's scheduler sees of an item."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        group = group_of(item)
        if group is not None and not _grouped(item.nodeid):
            item._id = NodeId.parse(f"{item.nodeid}@{group}")


def _grouped(nodeid: str) -> bool:
    # A parametrized test's id may hold "@" inside its brackets: only one after them counts.
    return nodeid.rfind("@") > nodeid.rfind("]")


class ModuleOrGroup(LoadScopeScheduling):
    """A work unit is an xdist group, else a test module (or class), as in `loadscope`."""

    def _split_scope(self, nodeid: str) -> str:
        if _grouped(nodeid):
            return "@" + nodeid.rsplit("@", 1)[1]
        scope: str = super()._split_scope(nodeid)
        return scope


def make_scheduler(config: pytest.Config, log: Any) -> ModuleOrGroup | None:
    if config.getvalue("dist") != "loadgroup":
        return None  # another --dist asked for on the command line: xdist's own
    return ModuleOrGroup(config, log)
