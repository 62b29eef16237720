"""`nuvem observability export DIR`: dashboards, alert rules and scrape config as files."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from nuvem.cli.context import settings_for
from nuvem.errors import BadRequest
from nuvem.gateway.auth import ADMIN_PASSWORD_FILE
from nuvem.metrics.observability_bundle import (
    ALERTMANAGER,
    PROMETHEUS,
    RULE_TESTS,
    BundleOptions,
    bundle,
)

out = Console()


def export(
    directory: Path,
    gateway: str | None,
    prometheus_url: str,
    alertmanager: str,
    metrics_auth: bool | None,
    force: bool,
    state_dir: Path | None,
) -> None:
    settings = settings_for(state_dir)
    root = directory.expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise BadRequest(f"{root} is a file, not a folder", "give a folder to write into")
    found = root.rglob("*") if root.exists() else iter(())
    present = sorted(str(p.relative_to(root)) for p in found if p.is_file())
    if present and not force:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise BadRequest(
            f"{root} already holds files ({shown})",
            "pass --force to overwrite nuvem's files there, or choose an empty folder",
        )
    options = BundleOptions(
        gateway=gateway or settings.url,
        password_file=(settings.state_dir / ADMIN_PASSWORD_FILE).absolute(),
        root=root,
        metrics_open=not metrics_auth if metrics_auth is not None else settings.open_metrics,
        prometheus_url=prometheus_url,
        alertmanager=alertmanager,
    )
    files = bundle(options)
    table = Table("wrote", "what", box=None)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        table.add_row(relative, _what(relative))
    out.print(table)
    out.print(
        f"Check the rules: promtool test rules {root / RULE_TESTS}\n"
        f"Run: prometheus --config.file={root / PROMETHEUS}; "
        f"prometheus-alertmanager --config.file={root / ALERTMANAGER}",
        highlight=False,
        soft_wrap=True,
    )


def _what(relative: str) -> str:
    if relative.endswith(".json"):
        return "Grafana dashboard"
    if relative.startswith("grafana/provisioning"):
        return "Grafana provisioning"
    if relative == RULE_TESTS:
        return "unit tests of the rules (promtool test rules)"
    if relative.startswith("prometheus/rules"):
        return "Prometheus alert rules"
    if relative == PROMETHEUS:
        return "Prometheus scrape config"
    return "Alertmanager: scaling alerts to /system/alert"
