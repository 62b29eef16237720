"""CLI commands about functions: deploy, ls, rm, invoke, scale, logs, events."""

from __future__ import annotations

import datetime
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from nuvem.cli.client import Client, response_error
from nuvem.cli.context import print_json, settings_for
from nuvem.cli.fitted_table import Column, show
from nuvem.errors import BadRequest

out = Console()
err = Console(stderr=True)


LS_COLUMNS = (
    Column("NAME"),
    Column("STATUS"),
    Column("REPLICAS"),
    Column("NODES", drop=2),
    Column("INFLIGHT", drop=4, justify="right"),
    Column("QUEUED", drop=3, justify="right"),
    Column("INVOCATIONS", drop=5, justify="right"),
    Column("VERSION", drop=3),
    Column("BUNDLE", drop=6),
    Column("HANDLER", flex=True),
)


def show_list(as_json: bool, wide: bool, state_dir: Path | None) -> None:
    with Client(settings_for(state_dir)) as client:
        found = client.call("GET", "/system/functions")
    if as_json:
        print_json(found)
        return
    rows = []
    waiting = []
    for f in found:
        rows.append(
            (
                f["name"],
                f["status"],
                f"{f['availableReplicas']}/{f['replicas']}",
                _nodes(f.get("replicaList", [])),
                str(f["inflight"]),
                str(f["queued"]),
                str(f["invocationCount"]),
                f.get("version") or "-",
                (f.get("bundle") or "-")[:12],
                f["handler"],
            )
        )
        waiting += [(f["name"], p) for p in f.get("pending", [])]
    show(out, LS_COLUMNS, rows, wide=wide)
    for name, pending in waiting:
        out.print(f"[yellow]pending[/yellow] {name} {pending['replica']}: {pending['reason']}")


def _nodes(replicas: list[dict[str, Any]]) -> str:
    """Where a function's replicas run: `127.0.0.2 (2), 127.0.0.3`."""
    counts = Counter(r["node"] for r in replicas if r["state"] != "dead")
    shown = (f"{node} ({n})" if n > 1 else node for node, n in sorted(counts.items()))
    return ", ".join(shown) or "-"


def remove(name: str, state_dir: Path | None) -> None:
    with Client(settings_for(state_dir)) as client:
        client.call("DELETE", f"/system/function/{name}")
    err.print(f"removed {name}")


def invoke(
    name: str,
    data: str | None,
    path: str,
    method: str,
    headers: list[str],
    state_dir: Path | None,
) -> None:
    settings = settings_for(state_dir)
    if data is None or data == "-":
        body = b"" if sys.stdin.isatty() and data is None else sys.stdin.buffer.read()
    else:
        body = data.encode()
    sent: dict[str, str] = {}
    for line in headers:
        key, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"header {line!r} is not 'Name: value'")
        sent[key.strip()] = value.strip()
    if settings.api_key:
        sent["Authorization"] = f"Bearer {settings.api_key}"
    with Client(settings, timeout=None) as client:
        target = f"/function/{name}" + (f"/{path.lstrip('/')}" if path else "")
        response = client.request(method.upper(), target, content=body, headers=sent)
    if response.status_code >= 400:
        raise response_error(response)
    sys.stdout.buffer.write(response.content)
    if response.content and not response.content.endswith(b"\n") and sys.stdout.isatty():
        sys.stdout.write("\n")
    sys.stdout.flush()


def scale(name: str, replicas: int, state_dir: Path | None) -> None:
    with Client(settings_for(state_dir)) as client:
        client.call(
            "POST",
            f"/system/scale-function/{name}",
            json={"serviceName": name, "replicas": replicas},
        )
    err.print(f"{name}: scaling to {replicas} replicas")


# Colors of the function-name prefixes, taken in turn (as docker compose does).
PREFIX_COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red")


def logs(names: list[str], tail: int | None, follow: bool, state_dir: Path | None) -> None:
    """One function's lines as `time replica text`; several functions' merged in time order,
    each line prefixed by its function's name in a color of its own."""
    params: dict[str, str | list[str]] = {"name": names, "follow": str(follow).lower()}
    if tail is not None:
        params["tail"] = str(tail)
    several = len(set(names)) > 1
    width = max(len(name) for name in names)
    colors = {name: PREFIX_COLORS[i % len(PREFIX_COLORS)] for i, name in enumerate(names)}
    lines_out = Console(highlight=False, soft_wrap=True)
    with Client(settings_for(state_dir), timeout=None) as client:
        try:
            with client.http.stream("GET", "/system/logs", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise response_error(response)
                for raw in response.iter_lines():
                    if not raw:
                        continue
                    line = json.loads(raw)
                    when = datetime.datetime.fromtimestamp(line["timestamp"])
                    stamp = when.strftime("%H:%M:%S.%f")[:-3]
                    text = f"{stamp} {line['instance']} {line['text']}"
                    if not several:
                        sys.stdout.write(text + "\n")
                        sys.stdout.flush()
                        continue
                    name = line["name"]
                    prefix = Text(f"{name:<{width}} | ", style=colors.get(name, "white"))
                    lines_out.print(prefix + Text(text))
        except KeyboardInterrupt:
            return
