"""`nuvem version`: a function repository's current version and the next one its commits
make, by the rules nuvem's own releases use (src/nuvem/release/)."""

from __future__ import annotations

import sys
from pathlib import Path

from nuvem.cli.context import print_json
from nuvem.release.commits import bump_of, next_version
from nuvem.release.history import GitHistory, latest_release
from nuvem.release.semver import Bump


def show(folder: Path, only_next: bool, as_json: bool) -> None:
    history = GitHistory(folder)
    current = latest_release(history)
    messages = history.messages_since(current.tag if current else None)
    upcoming = next_version(current, messages)
    bump = max((bump_of(message) for message in messages), default=Bump.NONE)
    if only_next:
        sys.stdout.write(f"{upcoming}\n")
        return
    if as_json:
        print_json(
            {
                "current": str(current) if current else None,
                "next": str(upcoming),
                "bump": bump.name.lower(),
                "commits": len(messages),
            }
        )
        return
    since = f"since {current.tag}" if current else "so far (no vX.Y.Z tag yet)"
    why = (
        f"{bump.name.lower()}, from {len(messages)} commit(s) {since}"
        if bump is not Bump.NONE
        else f"no release: none of the {len(messages)} commit(s) {since} is a feat, fix, "
        "perf or breaking change"
    )
    sys.stdout.write(f"current: {current or 'none'}\nnext: {upcoming} ({why})\n")
