"""`nuvem package`, `nuvem deploy` of a bundle, `nuvem rollback`: the stack as one versioned
file, sent to a gateway that need not share this machine's disk."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from nuvem.cli.client import Client, response_error
from nuvem.cli.context import settings_for
from nuvem.cli.deploy import wait_ready
from nuvem.cli.undo_plan import Undo, UndoAction, undo_plan
from nuvem.cluster import stack_bundle
from nuvem.errors import BadRequest, DeadlineExceeded, NuvemError

out = Console()
err = Console(stderr=True)
DIST = "dist"  # beside the stack file, unless -o says otherwise


def package(file: Path, out_dir: Path | None, version: str | None) -> Path:
    """Write the stack's bundle and its `.sha256` beside it; the bundle's path."""
    target = (out_dir if out_dir is not None else file.parent / DIST).expanduser().resolve()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True
    ) as progress:
        step = progress.add_task(f"collecting the files of {file}")
        # The output folder may lie inside a function's folder: earlier bundles are no code.
        bundle = stack_bundle.build(file, version, skip=frozenset({target}))
        progress.update(step, description=f"writing {bundle.file_name}")
        target.mkdir(parents=True, exist_ok=True)
        path = target / bundle.file_name
        path.write_bytes(bundle.archive.data)
        path.with_name(path.name + ".sha256").write_text(f"{bundle.archive.digest}  {path.name}\n")
    manifest = bundle.manifest
    err.print(
        f"[green]✓[/green] {manifest.name} {manifest.version}: {len(manifest.functions)} "
        f"function(s), {len(manifest.files)} files, {len(bundle.archive.data) / 1024:.1f} KiB, "
        f"sha256 {bundle.archive.digest[:12]}",
        highlight=False,
    )
    out.print(str(path), highlight=False, soft_wrap=True)
    return path


def deploy_bundle(
    bundle: Path,
    wait: bool,
    timeout: float,
    replace: bool,
    state_dir: Path | None,
    rollback_on_failure: bool = False,
) -> None:
    """Upload `bundle` unless the gateway has it, deploy it, wait until ready; with
    `rollback_on_failure`, a function that does not get ready sends what changed back."""
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise BadRequest(
            f"cannot read bundle {bundle}: {exc.strerror}",
            "build one with `nuvem package -f nuvem.yaml`",
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    with Client(settings_for(state_dir), timeout=600.0) as client:
        before = {f["name"]: f for f in client.call("GET", "/system/functions")}
        known = client.request("GET", f"/system/bundles/{digest}")
        if known.status_code == 404:
            _upload(client, data, digest)
        elif known.status_code >= 400:
            raise response_error(known)
        result = client.call("POST", f"/system/bundles/{digest}/deploy", json={"replace": replace})
        err.print(
            f"{result['name']} {result['version']} (sha256 {digest[:12]}) on {client.settings.url}",
            highlight=False,
        )
        sent = []
        for item in result["functions"]:
            mark = "[dim]=[/dim]" if item["change"] == "unchanged" else "[green]✓[/green]"
            err.print(f"{mark} {item['name']}: {item['change']}", highlight=False)
            sent.append(item["name"])
        problems: list[NuvemError] = []
        if wait and sent:
            try:
                problems = wait_ready(client, sent, timeout, fail_fast=False)
            except DeadlineExceeded as exc:
                problems = [exc]
        if problems and rollback_on_failure:
            undone = _undo(client, undo_plan(result["functions"], before), timeout)
            problems[0].hint = "; ".join(filter(None, [problems[0].hint, undone]))
    if problems:
        raise problems[0]


def _undo(client: Client, plan: list[Undo], timeout: float) -> str:
    """Carry out `plan`; what it did, for the error the deploy ends with."""
    done: list[str] = []
    rolled: list[str] = []
    for step in plan:
        if step.action is UndoAction.ROLLBACK:
            client.call("POST", f"/system/function/{step.name}/rollback", json={"version": None})
            err.print(f"[yellow]↩[/yellow] {step.name}: back to {step.detail}", highlight=False)
            done.append(f"rolled {step.name} back to {step.detail}")
            rolled.append(step.name)
        elif step.action is UndoAction.REMOVE:
            client.call("DELETE", f"/system/function/{step.name}")
            err.print(
                f"[yellow]↩[/yellow] {step.name}: removed (new in this deploy)", highlight=False
            )
            done.append(f"removed {step.name}")
        else:
            err.print(f"[yellow]![/yellow] {step.name}: left as is, {step.detail}", highlight=False)
            done.append(f"left {step.name} ({step.detail})")
    if rolled:
        # A rollback that does not get ready either is reported, not hidden behind the first.
        for problem in wait_ready(client, rolled, timeout, fail_fast=False):
            done.append(f"the rollback failed too: {problem}")
    return "; ".join(done)


def _upload(client: Client, data: bytes, digest: str) -> None:
    """PUT the bundle with a progress bar; the gateway checks `digest` against the bytes."""
    step = 256 * 1024
    with Progress(
        TextColumn("uploading"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("upload", total=len(data))

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(data), step):
                yield data[start : start + step]
                progress.update(task, advance=min(step, len(data) - start))

        response = client.request(
            "PUT",
            f"/system/bundles/{digest}",
            content=chunks(),
            # A length, not chunked: the gateway refuses an oversized bundle before it comes.
            headers={"content-type": "application/zip", "content-length": str(len(data))},
        )
    if response.status_code >= 400:
        raise response_error(response, "upload refused: ")
    err.print(f"[green]✓[/green] uploaded {len(data) / 1024:.1f} KiB", highlight=False)


def rollback(
    name: str, version: str | None, wait: bool, timeout: float, state_dir: Path | None
) -> None:
    with Client(settings_for(state_dir)) as client:
        status = client.call("POST", f"/system/function/{name}/rollback", json={"version": version})
        err.print(
            f"[green]✓[/green] {name}: rolling back to {status['version']} "
            f"(sha256 {(status['bundle'] or '')[:12]})",
            highlight=False,
        )
        if wait:
            problems = wait_ready(client, [name], timeout, fail_fast=False)
            if problems:
                raise problems[0]
