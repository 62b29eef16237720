"""`nuvem events`: one line per event, the whole of one with `--detail ID`."""

from __future__ import annotations

import datetime
import shutil
import sys
from pathlib import Path
from typing import Any

from nuvem.cli.client import Client
from nuvem.cli.context import print_json, settings_for
from nuvem.errors import NotFound

KIND_WIDTH = 15


def show(
    function: str | None, limit: int, detail: int | None, as_json: bool, state_dir: Path | None
) -> None:
    with Client(settings_for(state_dir)) as client:
        if detail is not None:
            found = client.call("GET", "/system/events", params={"after": detail - 1, "limit": 1})
            if not found or found[0]["id"] != detail:
                raise NotFound(f"there is no event {detail}", "see the ids with nuvem events")
            event = found[0]
            if as_json:
                print_json(event)
            else:
                sys.stdout.write(full(event))
            return
        params: dict[str, str | int] = {"limit": limit}
        if function:
            params["function"] = function
        events = client.call("GET", "/system/events", params=params)
    if as_json:
        print_json(events)
        return
    width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else None
    shown = [line(event, width) for event in events]
    for text in shown:
        sys.stdout.write(text + "\n")
    if any(text.endswith(("…", " lines)")) for text in shown):
        sys.stderr.write("(an event ending in … has more: nuvem events --detail ID)\n")


def _stamp(event: dict[str, Any], year: bool = False) -> str:
    when = datetime.datetime.fromtimestamp(event["time"])
    return when.strftime("%Y-%m-%d %H:%M:%S" if year else "%m-%d %H:%M:%S")


def line(event: dict[str, Any], width: int | None = None) -> str:
    """One line, whatever the message holds (a failed build carries uv's whole output); a
    line that does not show all ends in `…` (see `nuvem events --detail ID`)."""
    message = str(event["message"])
    first, *rest = message.strip().splitlines() or [""]
    more = f" …(+{len(rest)} lines)" if rest else ""
    head = f"{event['id']:>6} {_stamp(event)}  {event['kind']:<{KIND_WIDTH}} "
    if width is not None and len(head) + len(first) + len(more) > width:
        more = more or "…"
        room = max(10, width - len(head) - len(more))
        first = first[:room]
    return head + first + more


def full(event: dict[str, Any]) -> str:
    lines = [
        f"event     {event['id']}",
        f"time      {_stamp(event, year=True)}",
        f"kind      {event['kind']}",
        f"function  {event['function'] or '-'}",
    ]
    for key, value in sorted((event.get("data") or {}).items()):
        lines.append(f"{key:<9} {value}")
    return "\n".join(lines) + "\n\n" + str(event["message"]).rstrip() + "\n"
