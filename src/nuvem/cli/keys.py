"""CLI commands about API keys."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import typer
from rich.console import Console

from nuvem.cli.client import Client
from nuvem.cli.context import print_json, settings_for
from nuvem.cli.fitted_table import Column, show

out = Console()
err = Console(stderr=True)


def create(
    name: str,
    functions: str | None,
    rate: float | None,
    burst: int | None,
    state_dir: Path | None,
) -> None:
    allowed = [f.strip() for f in functions.split(",") if f.strip()] if functions else None
    body = {"name": name, "functions": allowed, "rate": rate, "burst": burst}
    with Client(settings_for(state_dir)) as client:
        created = client.call("POST", "/system/keys", json=body)
        deployed = {f["name"] for f in client.call("GET", "/system/functions")}
    # The key alone on stdout, so `KEY=$(nuvem keys create)` works; the rest on stderr.
    sys.stdout.write(created["key"] + "\n")
    scope = ", ".join(created["functions"]) if created["functions"] else "every function"
    err.print(f"created key {created['id']} for {scope}; it is not shown again", highlight=False)
    # A key may be made before its function is deployed, so an unknown name is only a warning:
    # usually it is a typo, and the key would answer 403 for the function that was meant.
    for name in sorted(set(allowed or ()) - deployed):
        err.print(
            f"[yellow]warning:[/] no function {name!r} is deployed (deployed: "
            f"{', '.join(sorted(deployed)) or 'none'}); the key works for it once one is",
            highlight=False,
        )


KEY_COLUMNS = (
    Column("ID"),
    Column("NAME", drop=3),
    Column("FUNCTIONS", flex=True, overflow="fold"),
    Column("RATE LIMIT", drop=2),
    Column("CREATED", drop=1),
    Column("REVOKED"),
)


def show_list(as_json: bool, wide: bool, state_dir: Path | None) -> None:
    with Client(settings_for(state_dir)) as client:
        found = client.call("GET", "/system/keys")
    if as_json:
        print_json(found)
        return
    rows = [
        (
            key["id"],
            key["name"],
            ", ".join(key["functions"]) if key["functions"] else "*",
            _limit(key.get("rate"), key.get("burst")),
            _when(key["created_at"]),
            _when(key["revoked_at"]) if key["revoked_at"] else "",
        )
        for key in found
    ]
    show(out, KEY_COLUMNS, rows, wide=wide)


def limit(
    key_id: str, rate: float | None, burst: int | None, default: bool, state_dir: Path | None
) -> None:
    if default == (rate is not None):
        raise typer.BadParameter("give either --rate (and maybe --burst) or --default")
    body = {"rate": None, "burst": None} if default else {"rate": rate, "burst": burst}
    with Client(settings_for(state_dir)) as client:
        changed = client.call("PUT", f"/system/keys/{key_id}/limits", json=body)
    err.print(f"key {key_id}: {_limit(changed['rate'], changed['burst'])}", highlight=False)


def _limit(rate: float | None, burst: int | None) -> str:
    if rate is None:
        return "default"
    if rate == 0:
        return "none"
    return f"{rate:g}/s, {burst or max(1, round(rate))} at once"


def revoke(key_id: str, state_dir: Path | None) -> None:
    with Client(settings_for(state_dir)) as client:
        client.call("DELETE", f"/system/keys/{key_id}")
    # Revoking is idempotent (a revoked key stays revoked from the first time); only a key
    # that never existed is an error.
    err.print(f"revoked key {key_id}")


def _when(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")
