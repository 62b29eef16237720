"""`nuvem plan`, `apply` and `destroy`: the whole stack file against the running platform.

The plan is computed here, purely (`stack/stack_plan.py`), from what the gateway says runs:
the functions' specs, what the last apply left (`/system/stack`), and the pools' previews
(`POST /system/pools/plan`, the provider's own plan). `apply` carries the plan out through
the same /system API `nuvem deploy` uses, then records what it left, so the next plan can
tell a change made through the API from an edit of the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from nuvem.cli.client import Client, response_error
from nuvem.cli.context import print_json, settings_for
from nuvem.cli.deploy import wait_ready
from nuvem.cli.plan_view import render
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack
from nuvem.stack.pools import PoolSpec
from nuvem.stack.stack import Stack
from nuvem.stack.stack_plan import (
    Action,
    LivePool,
    LiveState,
    MachineChange,
    MachineDrift,
    StackPlan,
    diff,
    spec_digest,
)

out = Console()
err = Console(stderr=True)
NO_CHANGES, CHANGES = 0, 2  # `nuvem plan`'s exit codes, as `terraform plan -detailed-exitcode`


@dataclass(frozen=True, slots=True)
class Gateway:
    """What the gateway told the plan beyond the live state: can it hold pools?"""

    engine: str
    pools: bool


def _pools_body(stack: Stack) -> dict[str, Any]:
    return {"pools": {name: spec.model_dump(mode="json") for name, spec in stack.pools.items()}}


def _machines(items: list[dict[str, Any]]) -> tuple[MachineChange, ...]:
    return tuple(MachineChange(i["node"], i["kind"], i.get("resource", "")) for i in items)


def gather(client: Client, stack: Stack) -> tuple[LiveState, Gateway]:
    """The platform as it runs now, for `diff`."""
    state = client.call("GET", "/system/stack")
    gateway = Gateway(state["engine"], state["pools"])
    functions = {
        f["name"]: FunctionSpec.model_validate(f["spec"])
        for f in client.call("GET", "/system/functions")
    }
    pools: dict[str, LivePool] = {}
    if stack.pools or gateway.pools:
        for pool in client.call("POST", "/system/pools/plan", json=_pools_body(stack))["pools"]:
            live = pool["live"]
            pools[pool["name"]] = LivePool(
                spec=PoolSpec.model_validate(live) if live is not None else None,
                planned=_machines(pool["planned"]),
                underway=_machines(pool["underway"]),
                drift=tuple(MachineDrift(d["node"], d["reason"]) for d in pool["drift"]),
            )
    applied = state["applied"]["functions"]
    return LiveState(functions=functions, applied=applied, pools=pools), gateway


def plan(file: Path, as_json: bool, state_dir: Path | None) -> int:
    """Print the plan; the exit code says whether there is anything to do."""
    stack = load_stack(file)
    with Client(settings_for(state_dir)) as client:
        live, _ = gather(client, stack)
    found = diff(stack, live)
    if as_json:
        print_json(found.as_dict())
    else:
        render(found, str(file), out)
    return NO_CHANGES if found.empty else CHANGES


def apply(file: Path, wait: bool, timeout: float, state_dir: Path | None) -> None:
    stack = load_stack(file)
    with Client(settings_for(state_dir)) as client:
        live, gateway = gather(client, stack)
        found = diff(stack, live)
        render(found, str(file), err)
        if not found.empty:
            _carry_out(client, stack, found, gateway)
        # Recorded even when nothing changed: functions deployed another way with the file's
        # spec become the baseline, and drift already seen (a lost machine) is acknowledged.
        digests = {name: spec_digest(spec) for name, spec in stack.functions.items()}
        client.call("PUT", "/system/stack/applied", json={"functions": digests})
        if not found.empty:
            err.print("[green]Apply complete.[/green]", highlight=False)
        if wait and stack.functions:
            wait_ready(client, list(stack.functions), timeout)


def _carry_out(client: Client, stack: Stack, found: StackPlan, gateway: Gateway) -> None:
    steps = len(found.functions) + (1 if stack.pools or gateway.pools else 0)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("applying", total=steps)
        for change in found.functions:
            progress.update(task, description=f"{change.action.value} {change.name}")
            if change.action is Action.REMOVE:
                client.call("DELETE", f"/system/function/{change.name}")
                progress.console.print(f"[red]-[/red] {change.name}: removed", highlight=False)
            else:
                _deploy(client, stack.functions[change.name])
                verb = "deployed" if change.action is Action.ADD else "updated"
                progress.console.print(f"[green]✓[/green] {change.name}: {verb}", highlight=False)
            progress.advance(task)
        if stack.pools or gateway.pools:
            progress.update(task, description="setting the pools")
            client.call("PUT", "/system/pools", json=_pools_body(stack))
            names = ", ".join(sorted(stack.pools)) or "none"
            progress.console.print(f"[green]✓[/green] pools set: {names}", highlight=False)
            progress.advance(task)


def _deploy(client: Client, spec: FunctionSpec) -> None:
    body = spec.model_dump(mode="json")
    response = client.request("PUT", "/system/functions", json=body)
    if response.status_code == 404:
        response = client.request("POST", "/system/functions", json=body)
    if response.status_code >= 400:
        raise response_error(response, f"deploying {spec.name}: ")


def destroy(file: Path, yes: bool, state_dir: Path | None) -> None:
    """Remove the stack file's functions, and every machine of its pools."""
    stack = load_stack(file)
    with Client(settings_for(state_dir)) as client:
        running = {f["name"] for f in client.call("GET", "/system/functions")}
        functions = sorted(set(stack.functions) & running)
        known = {p["name"] for p in client.call("GET", "/system/pools")["pools"]}
        pools = sorted(set(stack.pools) & known)
        if not functions and not pools:
            err.print(f"Nothing to destroy: nothing of {file} runs.", highlight=False)
            return
        err.print(f"nuvem will destroy what {file} made:\n", highlight=False)
        for name in functions:
            err.print(f"  [red]-[/red] function [bold]{name}[/bold]", highlight=False)
        for name in pools:
            err.print(
                f"  [red]-[/red] pool [bold]{name}[/bold] [dim](every machine drained and "
                "removed)[/dim]",
                highlight=False,
            )
        if not yes:
            typer.confirm("\nDestroy these?", abort=True, err=True)
        with err.status("destroying") as status:
            for name in functions:
                status.update(f"removing {name}")
                client.call("DELETE", f"/system/function/{name}")
                err.print(f"[red]-[/red] {name}: removed", highlight=False)
            for name in pools:
                status.update(f"destroying pool {name}: draining and removing its machines")
                client.call("DELETE", f"/system/pools/{name}", timeout=None)
                err.print(f"[red]-[/red] pool {name}: destroyed", highlight=False)
        # Nothing of the file is left: the next plan shows it all as new, not as drift.
        client.call("PUT", "/system/stack/applied", json={"functions": {}})
    err.print("[green]Destroy complete.[/green]", highlight=False)
