"""Settings for one CLI invocation: the environment, then command-line overrides."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from nuvem.cli.state_lock import read_record
from nuvem.config import Settings

# `nuvem --url URL COMMAND`: set once per process by the CLI's callback, before the command.
url_option: str | None = None


def settings_for(state_dir: Path | None) -> Settings:
    """The settings a client command talks with: the gateway is `--url`, else NUVEM_URL, else
    the one the state folder's `nuvem up` recorded, else the default URL."""
    settings = Settings.from_env()
    if state_dir is not None:
        settings = dataclasses.replace(settings, state_dir=state_dir.expanduser().absolute())
    if url_option:
        return dataclasses.replace(settings, url=url_option.rstrip("/"), url_chosen=True)
    if not settings.url_chosen:
        record = read_record(settings.state_dir)
        if record is not None:
            settings = dataclasses.replace(settings, url=record.url)
    return settings


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
