"""`nuvem top`: functions, replicas, load and recent scaling decisions, live in the terminal."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from nuvem.cli.client import Client
from nuvem.cli.context import settings_for

# Events that explain why replica counts moved.
SCALING_KINDS = {"autoscaled", "scaled", "alert", "replica_died", "replica_failed", "deployed"}
EVENTS_SHOWN = 8

out = Console()


def functions_table(functions: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", title="functions", title_justify="left")
    for column in ("NAME", "MODE", "READY/DESIRED", "MIN-MAX", "INFLIGHT", "QUEUED", "REQ/S"):
        table.add_column(column, justify="left" if column in ("NAME", "MODE") else "right")
    table.add_column("LATENCY", justify="right")
    table.add_column("DECISION", overflow="fold")
    for f in functions:
        load = f["load"]
        ready = f"{f['ready']}/{f['desired']}"
        if f["starting"]:
            ready += f" (+{f['starting']} starting)"
        table.add_row(
            f["name"],
            f["mode"] or "manual",
            ready,
            f"{f['min']}-{f['max']}",
            str(f["inflight"]),
            str(f["queued"]),
            f"{load['rps']:.1f}",
            f"{load['latency_ms']:.0f} ms",
            f["decision"] or "",
        )
    return table


def events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold", title="recent decisions", title_justify="left")
    table.add_column("TIME")
    table.add_column("KIND")
    table.add_column("WHAT", overflow="fold")
    for event in events[-EVENTS_SHOWN:]:
        stamp = datetime.datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S")
        table.add_row(stamp, event["kind"], event["message"])
    return table


def frame(client: Client) -> Group:
    functions = client.call("GET", "/system/scaling")
    events = client.call("GET", "/system/events", params={"limit": 200})
    scaling = [e for e in events if e["kind"] in SCALING_KINDS]
    stamp = Text(f"nuvem top  {client.settings.url}  {time.strftime('%H:%M:%S')}", style="dim")
    return Group(stamp, functions_table(functions), Text(""), events_table(scaling))


def run(interval: float, once: bool, state_dir: Path | None) -> None:
    with Client(settings_for(state_dir)) as client:
        if once:
            out.print(frame(client))
            return
        try:
            with Live(frame(client), console=out, auto_refresh=False, screen=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(frame(client), refresh=True)
        except KeyboardInterrupt:
            return
