"""Settings for one CLI invocation: the environment, then command-line overrides."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from nuvem.config import Settings


def settings_for(state_dir: Path | None) -> Settings:
    settings = Settings.from_env()
    if state_dir is not None:
        settings = dataclasses.replace(settings, state_dir=state_dir.expanduser().absolute())
    return settings


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
