"""Resource readings of a process, from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def rss_bytes(pid: int) -> int | None:
    """Resident memory of `pid`, or None when it cannot be read (gone, or not Linux)."""
    try:
        with Path(f"/proc/{pid}/status").open() as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
