"""Grafana's provisioning files: the Prometheus data source the dashboards query, and the
folder Grafana loads them from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nuvem.metrics.dashboards import DATASOURCE_UID

FOLDER = "nuvem"


def datasources(prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "nuvem Prometheus",
                "uid": DATASOURCE_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
                "jsonData": {"timeInterval": "15s"},  # the scrape interval: $__rate_interval
            }
        ],
    }


def dashboard_provider(dashboards_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": FOLDER,
                "folder": FOLDER,
                "type": "file",
                "disableDeletion": False,
                "allowUiUpdates": False,  # the files are the source: edits belong in nuvem
                "updateIntervalSeconds": 30,
                "options": {"path": str(dashboards_dir)},
            }
        ],
    }
