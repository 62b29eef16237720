"""`alertmanager.yml`: the scaling alerts go to the gateway's `/system/alert`, the rest to
a receiver of the user's (empty until they add email, chat or a pager to it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuvem.metrics.alert_rules import SCALE_LABEL, SCALE_VALUE
from nuvem.metrics.scrape_config import ADMIN_USER, ScrapeTarget

SCALE_RECEIVER = "nuvem-scale"
NOTIFY_RECEIVER = "nuvem-notify"


@dataclass(frozen=True, slots=True)
class Timing:
    """Alertmanager's grouping delays. A firing scaling alert repeats every
    `scale_repeat_interval`, and each repeat adds a step of replicas (as OpenFaaS does)."""

    group_wait: str = "10s"
    group_interval: str = "1m"
    repeat_interval: str = "4h"
    scale_group_wait: str = "5s"
    scale_group_interval: str = "10s"
    scale_repeat_interval: str = "30s"


def alertmanager_config(
    gateway: str, password_file: Path, timing: Timing | None = None
) -> dict[str, Any]:
    t = timing or Timing()
    target = ScrapeTarget.of(gateway)
    return {
        "route": {
            "receiver": NOTIFY_RECEIVER,
            "group_by": ["alertname", "function_name"],
            "group_wait": t.group_wait,
            "group_interval": t.group_interval,
            "repeat_interval": t.repeat_interval,
            "routes": [
                {
                    "receiver": SCALE_RECEIVER,
                    "matchers": [f'{SCALE_LABEL}="{SCALE_VALUE}"'],
                    "group_wait": t.scale_group_wait,
                    "group_interval": t.scale_group_interval,
                    "repeat_interval": t.scale_repeat_interval,
                }
            ],
        },
        "receivers": [
            {"name": NOTIFY_RECEIVER},
            {
                "name": SCALE_RECEIVER,
                "webhook_configs": [
                    {
                        "url": f"{target.scheme}://{target.address}/system/alert",
                        "send_resolved": True,
                        "http_config": {
                            "basic_auth": {
                                "username": ADMIN_USER,
                                "password_file": str(password_file),
                            }
                        },
                    }
                ],
            },
        ],
    }
