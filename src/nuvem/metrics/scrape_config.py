"""`prometheus.yml` for scraping one nuvem gateway and alerting through Alertmanager."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nuvem.errors import BadRequest

ADMIN_USER = "admin"  # gateway/auth.py's; repeated: metrics sits below the gateway


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    scheme: str
    address: str  # host:port

    @classmethod
    def of(cls, url: str) -> ScrapeTarget:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(
                f"not a gateway URL: {url!r}",
                "give it as http://HOST:PORT, e.g. --gateway http://127.0.0.1:8080",
            )
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return cls(parts.scheme, f"{host}:{port}")


def scrape_config(
    gateway: str,
    *,
    rule_files: list[str],
    alertmanager: str | None = "127.0.0.1:9093",
    password_file: Path | None = None,  # None: /metrics is open (NUVEM_OPEN_METRICS, the default)
    scrape_interval: str = "15s",
    scrape_timeout: str = "10s",  # at most scrape_interval, or Prometheus refuses the file
    evaluation_interval: str = "15s",
    job: str = "nuvem",
) -> dict[str, Any]:
    target = ScrapeTarget.of(gateway)
    scrape: dict[str, Any] = {
        "job_name": job,
        "scheme": target.scheme,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [target.address]}],
    }
    if password_file is not None:
        # A file, not the password: prometheus.yml is often shared; the file stays 0600.
        scrape["basic_auth"] = {"username": ADMIN_USER, "password_file": str(password_file)}
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_timeout,
            "evaluation_interval": evaluation_interval,
        },
        "rule_files": rule_files,
        "scrape_configs": [scrape],
    }
    if alertmanager is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config
