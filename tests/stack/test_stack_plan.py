"""The plan, pure: a stack file against the live state, field by field, with drift."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack_text
from nuvem.stack.pools import PoolSpec
from nuvem.stack.stack import Stack
from nuvem.stack.stack_plan import (
    MISSING,
    Action,
    Cause,
    FieldChange,
    LivePool,
    LiveState,
    MachineChange,
    MachineDrift,
    diff,
    field_changes,
    spec_digest,
)

STACK = """\
cluster: {engine: ray}
functions:
  echo:
    handler: functions:echo
    env: {MODE: file}
  upper:
    handler: functions:upper
    scaling: {min: 1, max: 4}
pools:
  cpu:
    min: 1
    max: 3
    node: {cpus: 2, memory: 4Gi}
"""


def load(text: str = STACK) -> Stack:
    return load_stack_text(dedent(text), "nuvem.yaml", Path("/srv/app"))


def wire(spec: FunctionSpec) -> FunctionSpec:
    """The spec as it comes back from the gateway: JSON there and back."""
    return FunctionSpec.model_validate(spec.model_dump(mode="json"))


def applied(stack: Stack) -> LiveState:
    """The platform right after `nuvem apply` of `stack`."""
    return LiveState(
        functions={name: wire(spec) for name, spec in stack.functions.items()},
        applied={name: spec_digest(spec) for name, spec in stack.functions.items()},
        pools={
            name: LivePool(spec=PoolSpec.model_validate(spec.model_dump(mode="json")))
            for name, spec in stack.pools.items()
        },
    )


def changed(spec: FunctionSpec, **fields: Any) -> FunctionSpec:
    return FunctionSpec.model_validate({**spec.model_dump(mode="json"), **fields})


def test_after_apply_there_is_nothing_to_do() -> None:
    stack = load()
    plan = diff(stack, applied(stack))
    assert plan.empty
    assert plan.as_dict()["changes"] is False


def test_on_an_empty_platform_everything_is_added() -> None:
    plan = diff(load(), LiveState(functions={}))
    assert [(f.name, f.action, f.cause) for f in plan.functions] == [
        ("echo", Action.ADD, Cause.FILE),
        ("upper", Action.ADD, Cause.FILE),
    ]
    assert [(p.name, p.action) for p in plan.pools] == [("cpu", Action.ADD)]
    assert plan.count(Action.ADD) == 3


def test_an_edit_of_the_file_is_a_change_in_the_file_field_by_field() -> None:
    before = load()
    after = load(STACK.replace("MODE: file", "MODE: edited, DEBUG: 1"))
    plan = diff(after, applied(before))
    [change] = plan.functions
    assert (change.name, change.action, change.cause) == ("echo", Action.CHANGE, Cause.FILE)
    assert not change.drift
    assert change.fields == (
        FieldChange("env.DEBUG", MISSING, "1"),
        FieldChange("env.MODE", "file", "edited"),
    )


def test_a_change_through_the_api_since_the_last_apply_is_drift() -> None:
    stack = load()
    live = applied(stack)
    api = changed(live.functions["echo"], env={"MODE": "api"})
    plan = diff(stack, LiveState({**live.functions, "echo": api}, live.applied, live.pools))
    [change] = plan.functions
    assert (change.action, change.cause, change.drift) == (Action.CHANGE, Cause.PLATFORM, True)
    assert change.fields == (FieldChange("env.MODE", "api", "file"),)
    assert plan.drifted() == 1


def test_both_changed_and_never_applied_are_told_apart() -> None:
    before, after = load(), load(STACK.replace("MODE: file", "MODE: edited"))
    live = applied(before)
    api = changed(live.functions["echo"], env={"MODE": "api"})
    both = diff(after, LiveState({**live.functions, "echo": api}, live.applied, live.pools))
    assert both.functions[0].cause is Cause.BOTH
    never = diff(after, LiveState(live.functions, {}, live.pools))
    assert never.functions[0].cause is Cause.UNKNOWN


def test_removed_through_the_api_and_deployed_outside_the_file() -> None:
    stack = load()
    live = applied(stack)
    gone = {k: v for k, v in live.functions.items() if k != "upper"}
    extra = changed(live.functions["echo"], name="extra")
    plan = diff(stack, LiveState({**gone, "extra": extra}, live.applied, live.pools))
    causes = {f.name: (f.action, f.cause) for f in plan.functions}
    assert causes == {
        "upper": (Action.ADD, Cause.PLATFORM),  # the last apply deployed it
        "extra": (Action.REMOVE, Cause.UNKNOWN),  # no apply ever did
    }
    taken_out = load(
        STACK.replace("  upper:\n    handler: functions:upper\n", "").replace(
            "    scaling: {min: 1, max: 4}\n", ""
        )
    )
    [removed] = diff(taken_out, live).functions
    assert (removed.name, removed.action, removed.cause) == ("upper", Action.REMOVE, Cause.FILE)


def test_scaling_by_hand_is_not_a_change() -> None:
    # `nuvem scale` changes the desired count, never the spec: the live spec is the same.
    stack = load()
    assert diff(stack, applied(stack)).empty


def test_a_resized_pool_shows_its_fields_and_the_machines_the_provider_plans() -> None:
    before = load()
    after = load(STACK.replace("min: 1\n    max: 3", "min: 2\n    max: 5"))
    live = applied(before)
    pool = LivePool(
        spec=live.pools["cpu"].spec,
        planned=(MachineChange("cpu-1", "create"), MachineChange("cpu-2", "create")),
        underway=(MachineChange("cpu-1", "create"),),  # the tier makes cpu-1 anyway
    )
    plan = diff(after, LiveState(live.functions, live.applied, {"cpu": pool}))
    [change] = plan.pools
    assert change.action is Action.CHANGE
    assert change.fields == (FieldChange("max", 3, 5), FieldChange("min", 1, 2))
    assert change.machines == (MachineChange("cpu-2", "create"),)
    assert change.underway == (MachineChange("cpu-1", "create"),)


def test_work_under_way_alone_is_not_a_change_but_a_lost_machine_is() -> None:
    stack = load()
    live = applied(stack)
    spec = live.pools["cpu"].spec
    busy = LivePool(
        spec,
        planned=(MachineChange("cpu-1", "create"),),
        underway=(MachineChange("cpu-1", "create"),),
    )
    assert diff(stack, LiveState(live.functions, live.applied, {"cpu": busy})).empty
    lost = LivePool(spec, drift=(MachineDrift("cpu-1", "lost: killed by hand"),))
    plan = diff(stack, LiveState(live.functions, live.applied, {"cpu": lost}))
    assert not plan.empty
    assert plan.drifted() == 1


def test_a_pool_taken_out_of_the_file_is_removed_with_its_machines() -> None:
    live = applied(load())
    no_pools = load(
        "functions:\n  echo: {handler: functions:echo, env: {MODE: file}}\n"
        "  upper: {handler: functions:upper, scaling: {min: 1, max: 4}}\n"
    )
    pool = LivePool(live.pools["cpu"].spec, planned=(MachineChange("cpu-1", "delete"),))
    plan = diff(no_pools, LiveState(live.functions, live.applied, {"cpu": pool}))
    [change] = plan.pools
    assert change.action is Action.REMOVE
    assert change.machines == (MachineChange("cpu-1", "delete"),)


def test_field_changes_walk_mappings_and_compare_lists_whole() -> None:
    old = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    new = {"a": {"b": 2, "c": [1, 2, 3]}, "e": {"f": "x"}}
    assert field_changes(old, new) == [
        FieldChange("a.b", 1, 2),
        FieldChange("a.c", [1, 2], [1, 2, 3]),
        FieldChange("d", 1, MISSING),
        FieldChange("e.f", MISSING, "x"),
    ]
    assert field_changes(new, new) == []


# -- properties --------------------------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8)
_function = st.fixed_dictionaries(
    {
        "handler": st.sampled_from(["functions:echo", "functions:upper", "app.py"]),
        "env": st.dictionaries(st.from_regex(r"[A-Z]{1,4}", fullmatch=True), _text, max_size=3),
        "timeout": st.integers(1, 600),
        "max_inflight": st.integers(1, 64),
        "scaling": st.integers(0, 4).map(lambda low: {"min": low, "max": low + 4}),
        "requirements": st.lists(st.sampled_from(["numpy", "pillow==10.4.0"]), max_size=2),
    }
)
_pool = st.fixed_dictionaries(
    {
        "max": st.integers(1, 8),
        "node": st.fixed_dictionaries({"cpus": st.integers(1, 8), "gpus": st.integers(0, 2)}),
        "variables": st.dictionaries(
            st.from_regex(r"[a-z]{1,5}", fullmatch=True), _text, max_size=2
        ),
    }
)
_stacks = st.builds(
    lambda functions, pools: Stack.model_validate(
        {
            "cluster": {"engine": "ray"},
            "functions": {n: {**f, "root": "/srv/app"} for n, f in functions.items()},
            "pools": pools,
        }
    ),
    st.dictionaries(_names, _function, max_size=4),
    st.dictionaries(_names, _pool, max_size=3),
)


@settings(max_examples=40, deadline=None)
@given(_stacks)
def test_a_stack_just_applied_plans_no_changes(stack: Stack) -> None:
    assert diff(stack, applied(stack)).empty


@settings(max_examples=40, deadline=None)
@given(_stacks, _stacks)
def test_every_difference_is_in_the_plan_and_nothing_else(before: Stack, after: Stack) -> None:
    plan = diff(after, applied(before))
    functions = {f.name: f.action for f in plan.functions}
    for name in set(before.functions) | set(after.functions):
        old, new = before.functions.get(name), after.functions.get(name)
        if old is None:
            assert functions[name] is Action.ADD
        elif new is None:
            assert functions[name] is Action.REMOVE
        elif old.model_dump(mode="json") != new.model_dump(mode="json"):
            assert functions[name] is Action.CHANGE
            assert next(f for f in plan.functions if f.name == name).cause is Cause.FILE
        else:
            assert name not in functions
    assert plan.empty == (
        before.model_dump(mode="json", include={"functions", "pools"})
        == after.model_dump(mode="json", include={"functions", "pools"})
    )
