"""Everything `nuvem observability export` writes, as relative path -> text: Grafana
dashboards and provisioning, the Prometheus scrape config with the alert rules and their
unit tests, and Alertmanager's routing of scaling alerts to the gateway."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nuvem.metrics.alert_rule_tests import rule_tests_file
from nuvem.metrics.alert_rules import Thresholds, alert_rules, rules_file
from nuvem.metrics.alertmanager_config import Timing, alertmanager_config
from nuvem.metrics.dashboards import dashboards, to_json
from nuvem.metrics.grafana_provisioning import dashboard_provider, datasources
from nuvem.metrics.scrape_config import scrape_config

DASHBOARDS = "grafana/dashboards"
RULES = "prometheus/rules/nuvem.rules.yml"
RULE_TESTS = "prometheus/rules/nuvem.rules.test.yml"
PROMETHEUS = "prometheus/prometheus.yml"
ALERTMANAGER = "alertmanager/alertmanager.yml"


@dataclass(frozen=True, slots=True)
class BundleOptions:
    gateway: str  # the URL Prometheus scrapes and Alertmanager calls
    password_file: Path  # the admin password file: Alertmanager's webhook always needs it
    root: Path  # where the bundle goes: Grafana's provider and Prometheus' rules point here
    metrics_open: bool = True  # False: Prometheus scrapes /metrics with the admin password
    prometheus_url: str = "http://127.0.0.1:9090"  # as Grafana reaches it
    alertmanager: str = "127.0.0.1:9093"  # as Prometheus reaches it
    scrape_interval: str = "15s"
    thresholds: Thresholds = field(default_factory=Thresholds)
    timing: Timing = field(default_factory=Timing)


def _yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=100)


def bundle(options: BundleOptions) -> dict[str, str]:
    root = options.root.resolve()
    rules = alert_rules(options.thresholds)
    files = {f"{DASHBOARDS}/{stem}.json": to_json(board) for stem, board in dashboards().items()}
    files["grafana/provisioning/dashboards/nuvem.yaml"] = _yaml(
        dashboard_provider(root / DASHBOARDS)
    )
    files["grafana/provisioning/datasources/nuvem.yaml"] = _yaml(
        datasources(options.prometheus_url)
    )
    files[PROMETHEUS] = _yaml(
        scrape_config(
            options.gateway,
            rule_files=[str(root / RULES)],
            alertmanager=options.alertmanager,
            password_file=None if options.metrics_open else options.password_file,
            scrape_interval=options.scrape_interval,
            evaluation_interval=options.scrape_interval,
            job=options.thresholds.scrape_job,
        )
    )
    files[RULES] = _yaml(rules_file(rules))
    files[RULE_TESTS] = _yaml(rule_tests_file(Path(RULES).name, options.thresholds))
    files[ALERTMANAGER] = _yaml(
        alertmanager_config(options.gateway, options.password_file, options.timing)
    )
    return files
