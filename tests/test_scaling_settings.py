"""Settings the controller and the warm pool take from the environment."""

from __future__ import annotations

from pathlib import Path

from nuvem.config import Settings
from nuvem.platform import Platform
from support import local_runtime


def test_tick_interval_and_warm_workers_come_from_the_environment() -> None:
    settings = Settings.from_env({"NUVEM_TICK_INTERVAL": "0.25", "NUVEM_WARM_WORKERS": "0"})
    assert (settings.tick_interval, settings.warm_workers) == (0.25, 0)
    defaults = Settings.from_env({})
    assert (defaults.tick_interval, defaults.warm_workers) == (1.0, 1)


def test_the_platform_uses_them(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, tick_interval=0.3, warm_workers=3, admin_password="x")
    platform = Platform.create(settings)
    try:
        assert platform.controller.tick_interval == 0.3
        runtime = local_runtime(platform)
        assert runtime.pool.size == 3
    finally:
        platform.records.close()
