"""Typed settings. This is the only module that reads environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

DEFAULT_URL = "http://127.0.0.1:8080"


def default_state_dir() -> Path:
    return Path(platformdirs.user_data_dir("nuvem", appauthor=False))


@dataclass(frozen=True, slots=True)
class Settings:
    url: str = DEFAULT_URL
    admin_password: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    api_key: str | None = None
    open_metrics: bool = True
    open_health: bool = True

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        state = env.get("NUVEM_STATE_DIR")
        return cls(
            url=env.get("NUVEM_URL", DEFAULT_URL).rstrip("/"),
            admin_password=env.get("NUVEM_ADMIN_PASSWORD") or None,
            state_dir=Path(state).expanduser() if state else default_state_dir(),
            api_key=env.get("NUVEM_API_KEY") or None,
            open_metrics=_flag(env.get("NUVEM_OPEN_METRICS"), default=True),
            open_health=_flag(env.get("NUVEM_OPEN_HEALTH"), default=True),
        )


def _flag(value: str | None, *, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}
