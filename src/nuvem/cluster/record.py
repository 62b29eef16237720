"""What the state folder remembers about the cluster while it runs, for the other commands.

`cluster/head.json`: the head this gateway started or uses (`nuvem nodes` and `nuvem node
token --command` read it); `cluster/node.json`: the node this machine runs as (`nuvem node
leave` signals its process). Neither holds a secret: the token stays in its own 0600 file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nuvem.errors import NotFound

HEAD_RECORD = Path("cluster") / "head.json"
NODE_RECORD = Path("cluster") / "node.json"


@dataclass(frozen=True, slots=True)
class HeadRecord:
    address: str  # HOST:PORT that nodes join
    token_file: str
    pid: int | None  # the `ray start` nuvem runs; None when the head is not nuvem's


@dataclass(frozen=True, slots=True)
class NodeRecord:
    head: str  # the head's HOST:PORT
    address: str  # this node's IP address
    port: int  # its raylet's port
    node_id: str
    pid: int  # the `nuvem node join` process that leaves on SIGTERM
    ray_pid: int  # its `ray start`, whose session holds every Ray process of the node
    log: str


def write_head(state_dir: Path, record: HeadRecord) -> None:
    _write(state_dir / HEAD_RECORD, asdict(record))


def read_head(state_dir: Path) -> HeadRecord:
    data = _read(state_dir / HEAD_RECORD)
    if data is None:
        raise NotFound(
            f"no Ray head is recorded in {state_dir}",
            hint="start one with `nuvem up -f STACK` where the stack says "
            "`cluster: {engine: ray}`, or pass --address HOST:PORT and --token-file",
        )
    return HeadRecord(**data)


def write_node(state_dir: Path, record: NodeRecord) -> None:
    _write(state_dir / NODE_RECORD, asdict(record))


def read_node(state_dir: Path) -> NodeRecord | None:
    data = _read(state_dir / NODE_RECORD)
    return None if data is None else NodeRecord(**data)


def clear(state_dir: Path, which: Path) -> None:
    (state_dir / which).unlink(missing_ok=True)


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(staging, path)  # readers never see half a record


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
