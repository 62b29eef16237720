"""`nuvem top`: functions, replicas, load and recent scaling decisions, live in the terminal."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from nuvem.cli.client import Client
from nuvem.cli.context import settings_for
from nuvem.cli.fitted_table import Column, fitted

# Events that explain why replica counts moved.
SCALING_KINDS = {"autoscaled", "scaled", "alert", "replica_died", "replica_failed", "deployed"}
EVENTS_SHOWN = 8

out = Console()


FUNCTION_COLUMNS = (
    Column("NAME"),
    Column("MODE", drop=3),
    Column("READY", justify="right"),  # ready/desired, and starts under way
    Column("MIN-MAX", drop=4, justify="right"),
    Column("INFLIGHT", drop=2, justify="right"),
    Column("QUEUED", drop=1, justify="right"),
    Column("REQ/S", justify="right"),
    Column("LATENCY", justify="right"),
    Column("DECISION", flex=True, overflow="fold"),
)
EVENT_COLUMNS = (Column("TIME"), Column("KIND"), Column("WHAT", flex=True, overflow="fold"))


def functions_table(functions: list[dict[str, Any]], width: int | None) -> RenderableType:
    rows = []
    for f in functions:
        load = f["load"]
        ready = f"{f['ready']}/{f['desired']}"
        if f["starting"]:
            ready += f" (+{f['starting']})"
        rows.append(
            (
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
        )
    return fitted(FUNCTION_COLUMNS, rows, width=width, title="functions")


def events_table(events: list[dict[str, Any]], width: int | None) -> RenderableType:
    rows = [
        (
            datetime.datetime.fromtimestamp(event["time"]).strftime("%H:%M:%S"),
            event["kind"],
            event["message"],
        )
        for event in events[-EVENTS_SHOWN:]
    ]
    return fitted(EVENT_COLUMNS, rows, width=width, title="recent decisions")


def frame(client: Client, wide: bool = False) -> Group:
    functions = client.call("GET", "/system/scaling")
    events = client.call("GET", "/system/events", params={"limit": 200})
    scaling = [e for e in events if e["kind"] in SCALING_KINDS]
    stamp = Text(f"nuvem top  {client.settings.url}  {time.strftime('%H:%M:%S')}", style="dim")
    width = None if wide else out.width
    return Group(stamp, functions_table(functions, width), Text(""), events_table(scaling, width))


def run(interval: float, once: bool, wide: bool, state_dir: Path | None) -> None:
    with Client(settings_for(state_dir)) as client:
        if once:
            out.print(frame(client, wide))
            return
        try:
            with Live(frame(client, wide), console=out, auto_refresh=False, screen=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(frame(client, wide), refresh=True)
        except KeyboardInterrupt:
            return
