"""How `nuvem plan` shows a `StackPlan`: +/~/- lines, colored, the way Terraform does."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from nuvem.stack.stack_plan import (
    MISSING,
    Action,
    Cause,
    FieldChange,
    FunctionChange,
    MachineChange,
    PoolChange,
    StackPlan,
)

_SIGN = {
    Action.ADD: "[green]+[/green]",
    Action.CHANGE: "[yellow]~[/yellow]",
    Action.REMOVE: "[red]-[/red]",
}
_MACHINE = {
    "create": "[green]+[/green]",
    "delete": "[red]-[/red]",
    "replace": "[red]-[/red]/[green]+[/green]",
    "update": "[yellow]~[/yellow]",
}
_DRIFT = "[magenta]![/magenta]"

_FUNCTION_WHY = {
    (Action.ADD, Cause.FILE): "new in the file",
    (Action.ADD, Cause.PLATFORM): "removed through the API since the last apply",
    (Action.ADD, Cause.BOTH): "removed through the API since the last apply, changed in the file",
    (Action.ADD, Cause.UNKNOWN): "not deployed",
    (Action.CHANGE, Cause.FILE): "changed in the file",
    (Action.CHANGE, Cause.PLATFORM): (
        "changed since the last apply, through the API or another deploy; apply puts the "
        "file's version back"
    ),
    (Action.CHANGE, Cause.BOTH): (
        "changed in the file, and since the last apply through the API or another deploy"
    ),
    (Action.CHANGE, Cause.UNKNOWN): "differs from the file (not deployed by nuvem apply)",
    (Action.REMOVE, Cause.FILE): "taken out of the file",
    (Action.REMOVE, Cause.PLATFORM): "not in the file",
    (Action.REMOVE, Cause.BOTH): (
        "taken out of the file, and changed since the last apply through the API"
    ),
    (Action.REMOVE, Cause.UNKNOWN): "not in the file; deployed outside nuvem apply",
}


def _value(value: Any) -> str:
    if value is MISSING:
        return "(absent)"
    return json.dumps(value)


def _field(change: FieldChange) -> str:
    path = escape(change.path)
    if change.old is MISSING:
        return f"[green]+[/green] {path} = {escape(_value(change.new))}"
    if change.new is MISSING:
        return f"[red]-[/red] {path} = {escape(_value(change.old))}"
    old, new = escape(_value(change.old)), escape(_value(change.new))
    return f"[yellow]~[/yellow] {path}: {old} [dim]→[/dim] {new}"


def _function(change: FunctionChange) -> list[str]:
    why = _FUNCTION_WHY[(change.action, change.cause)]
    head = f"{_SIGN[change.action]} function [bold]{escape(change.name)}[/bold]  [dim]({why})[/dim]"
    if change.action is Action.CHANGE:
        return [head] + [f"      {_field(f)}" for f in change.fields]
    values = {f.path: f.new if change.action is Action.ADD else f.old for f in change.fields}
    summary = [f"handler {values.get('handler')}"]
    low, high = values.get("scaling.min"), values.get("scaling.max")
    if low is not None and high is not None:
        summary.append(f"replicas {low}..{high}")
    return [head, f"      [dim]{escape(', '.join(summary))}[/dim]"]


def _machine(change: MachineChange) -> str:
    sign = _MACHINE.get(change.kind, "[yellow]~[/yellow]")
    what = f"machine {escape(change.node)}" if change.node else "pool resource"
    resource = f" [dim]{escape(change.resource)}[/dim]" if change.resource else ""
    return f"{sign} {what} ({change.kind}){resource}"


def _pool_summary(values: dict[str, Any]) -> str:
    memory = values.get("node.memory")
    memory_text = f"{memory / 2**30:g} GiB" if isinstance(memory, int | float) else "?"
    return (
        f"module {values.get('module')}, min {values.get('min')}, max {values.get('max')}, "
        f"warm {values.get('warm')}; machines of {values.get('node.cpus')} CPU, "
        f"{values.get('node.gpus')} GPU, {memory_text}"
    )


def _pool(change: PoolChange) -> list[str]:
    name = f"pool [bold]{escape(change.name)}[/bold]"
    lines = []
    if change.action is Action.ADD:
        values = {f.path: f.new for f in change.fields}
        lines.append(f"{_SIGN[Action.ADD]} {name}  [dim](new in the file)[/dim]")
        lines.append(f"      [dim]{escape(_pool_summary(values))}[/dim]")
    elif change.action is Action.REMOVE:
        lines.append(
            f"{_SIGN[Action.REMOVE]} {name}  [dim](taken out of the file: its machines are "
            "drained and removed)[/dim]"
        )
    elif change.action is Action.CHANGE:
        lines.append(f"{_SIGN[Action.CHANGE]} {name}  [dim](changed in the file)[/dim]")
        lines += [f"      {_field(f)}" for f in change.fields]
    elif change.machines:
        lines.append(f"{_SIGN[Action.CHANGE]} {name}  [dim](its machines)[/dim]")
    lines += [f"      {_machine(m)}" for m in change.machines]
    for drift in change.drift:
        lines.append(
            f"{_DRIFT} {name}: machine [bold]{escape(drift.node)}[/bold] failed or was lost "
            f"since the last apply  [dim]({escape(drift.reason)})[/dim]"
        )
    if change.underway:
        doing = ", ".join(f"{m.kind} {m.node or m.resource}" for m in change.underway)
        lines.append(
            f"[dim]· {name}: under way, the pool does this by itself: {escape(doing)}[/dim]"
        )
    return lines


def render(plan: StackPlan, file: str, console: Console) -> None:
    lines: list[str] = []
    for function in plan.functions:
        lines += _function(function)
    for pool in plan.pools:
        lines += _pool(pool)
    if plan.empty:
        for line in lines:  # only the pools' work under way: not a change
            console.print(line, highlight=False)
        console.print(
            f"[green]No changes.[/green] The platform matches {escape(file)}.", highlight=False
        )
        return
    console.print(f"nuvem will change the platform to match {escape(file)}:\n", highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False)
    console.print(
        f"\n[bold]Plan:[/bold] {plan.count(Action.ADD)} to add, {plan.count(Action.CHANGE)} "
        f"to change, {plan.count(Action.REMOVE)} to remove; {plan.drifted()} drifted.",
        highlight=False,
    )
