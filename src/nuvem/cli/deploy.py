"""`nuvem deploy`: send the stack file's functions, say what changed, wait until ready.

Every function is tried and every problem reported in one go, rather than stopping at the
first: a stack of twenty functions with two typos should take one round trip to fix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console

from nuvem.cli.client import Client, response_error
from nuvem.cli.context import settings_for
from nuvem.errors import Conflict, DeadlineExceeded, NuvemError, Unavailable
from nuvem.stack.function import FunctionSpec
from nuvem.stack.loader import load_stack

err = Console(stderr=True)
# Statuses after which a function waits for nothing more from this deploy.
SETTLED = ("ready", "stopped", "idle")


def deploy(file: Path, wait: bool, timeout: float, replace: bool, state_dir: Path | None) -> None:
    stack = load_stack(file)
    if not stack.functions:
        err.print(f"{file} declares no functions; nothing to deploy")
        return
    with Client(settings_for(state_dir)) as client:
        live = {f["name"]: f for f in client.call("GET", "/system/functions")}
        if not replace:
            _refuse_takeovers(file, stack.functions.values(), live)
        problems: list[NuvemError] = []
        sent: list[str] = []
        for spec in stack.functions.values():
            body = spec.model_dump(mode="json")
            current = live.get(spec.name)
            # The same spec again changes nothing, unless the function gave up starting:
            # then deploying is how the user asks it to try once more.
            if current is not None and current["spec"] == body and current["status"] != "error":
                err.print(f"[dim]=[/dim] {spec.name}: unchanged", highlight=False)
                sent.append(spec.name)
                continue
            method = "PUT" if current is not None else "POST"
            response = client.request(method, "/system/functions", json=body)
            if response.status_code >= 400:
                problems.append(response_error(response, f"{spec.name}: "))
                err.print(f"[red]✗[/red] {problems[-1]}", highlight=False)
                continue
            verb = "updated" if current is not None else "created"
            err.print(f"[green]✓[/green] {spec.name}: {verb}", highlight=False)
            sent.append(spec.name)
        if wait and sent:
            problems += wait_ready(client, sent, timeout, fail_fast=False)
    if problems:
        raise _failed(problems, len(stack.functions))


def _refuse_takeovers(
    file: Path, specs: Iterable[FunctionSpec], live: dict[str, dict[str, Any]]
) -> None:
    """A function of the same name deployed from another folder is another stack's: taking
    it over silently replaced someone's work (e.g. two `nuvem init` projects' `hello`)."""
    taken = []
    for spec in specs:
        current = live.get(spec.name)
        if current is not None and current["spec"].get("root") != spec.root:
            taken.append(f"{spec.name} (deployed from {current['spec'].get('root')})")
    if taken:
        raise Conflict(
            f"{file} would replace functions another stack deployed: {', '.join(taken)}",
            "deploy with --replace to take them over, or rename the functions in " + str(file),
        )


def _failed(problems: list[NuvemError], total: int) -> NuvemError:
    """One error for them all; of the kind (and exit code) they share, if they share one."""
    if len(problems) == 1:
        return problems[0]
    listed = "\n".join(f"  - {p}" for p in problems)
    kinds = {type(p) for p in problems}
    kind = kinds.pop() if len(kinds) == 1 else Unavailable
    error = kind(f"{len(problems)} of {total} functions failed to deploy:\n{listed}")
    error.status = problems[0].status if kind is NuvemError else kind.status
    return error


def wait_ready(
    client: Client, names: list[str], timeout: float, *, fail_fast: bool = True
) -> list[NuvemError]:
    """Poll until every function is settled; returns the problems of those that failed
    (or raises at the first one with `fail_fast`)."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    problems: list[NuvemError] = []
    with err.status("waiting for replicas") as status:
        while pending:
            for name in sorted(pending):
                info = client.call("GET", f"/system/function/{name}")
                counts = f"{info['availableReplicas']}/{info['replicas']} replicas ready"
                # During a rolling update the old replicas keep the function "ready": the
                # deploy is done when the new ones are, and failed when none of them starts.
                updated = info.get("updatedReplicas", info["availableReplicas"])
                if info["status"] in SETTLED and updated >= info["replicas"]:
                    pending.discard(name)
                    err.print(f"[green]✓[/green] {name}: {counts}", highlight=False)
                elif info["status"] == "error" or (info.get("error") and updated == 0):
                    problem = Unavailable(f"{name} cannot start: {info['error']}")
                    if fail_fast:
                        raise problem
                    pending.discard(name)
                    problems.append(problem)
                    err.print(f"[red]✗[/red] {problems[-1]}", highlight=False)
                else:
                    doing = f" ({info['progress']})" if info.get("progress") else ""
                    status.update(f"{name}: {counts}{doing}")
            if pending and time.monotonic() > deadline:
                raise DeadlineExceeded(f"not ready after {timeout:.0f}s: {', '.join(pending)}")
            if pending:
                time.sleep(0.2)
    return problems
