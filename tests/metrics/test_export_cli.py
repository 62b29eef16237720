"""`nuvem observability export DIR`, the real command: the files it writes load in
Prometheus' and Alertmanager's own checkers, and it does not overwrite without --force."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import need
from support import Nuvem

EXPECTED = {
    "grafana/dashboards/nuvem-overview.json",
    "grafana/dashboards/nuvem-function.json",
    "grafana/dashboards/nuvem-nodes.json",
    "grafana/provisioning/dashboards/nuvem.yaml",
    "grafana/provisioning/datasources/nuvem.yaml",
    "prometheus/prometheus.yml",
    "prometheus/rules/nuvem.rules.yml",
    "prometheus/rules/nuvem.rules.test.yml",
    "alertmanager/alertmanager.yml",
}


@pytest.fixture
def cli(tmp_path: Path) -> Nuvem:
    return Nuvem(tmp_path)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _check(*args: str) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_export_writes_files_the_tools_accept(cli: Nuvem, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli.run("observability", "export", str(out), "--gateway", "http://10.0.0.5:8080")
    assert _files(out) == EXPECTED
    for relative in EXPECTED:
        assert relative in result.stdout
    promtool = need("promtool", "prometheus")
    _check(promtool, "check", "config", str(out / "prometheus/prometheus.yml"))
    _check(promtool, "test", "rules", str(out / "prometheus/rules/nuvem.rules.test.yml"))
    _check(
        need("amtool", "prometheus-alertmanager"),
        "check-config",
        str(out / "alertmanager/alertmanager.yml"),
    )

    prometheus = yaml.safe_load((out / "prometheus/prometheus.yml").read_text())
    (scrape,) = prometheus["scrape_configs"]
    assert scrape["static_configs"] == [{"targets": ["10.0.0.5:8080"]}]
    assert "basic_auth" not in scrape  # /metrics is open by default
    alertmanager = yaml.safe_load((out / "alertmanager/alertmanager.yml").read_text())
    scale = next(r for r in alertmanager["receivers"] if "webhook_configs" in r)
    (hook,) = scale["webhook_configs"]
    assert hook["url"] == "http://10.0.0.5:8080/system/alert"
    assert hook["http_config"]["basic_auth"]["password_file"] == str(cli.password_file)
    provider = yaml.safe_load((out / "grafana/provisioning/dashboards/nuvem.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == str(out / "grafana/dashboards")
    board = json.loads((out / "grafana/dashboards/nuvem-function.json").read_text())
    assert board["uid"] == "nuvem-function"


def test_metrics_behind_the_password_are_scraped_with_its_file(cli: Nuvem, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli.run("observability", "export", str(out), env={"NUVEM_OPEN_METRICS": "0"})
    (scrape,) = yaml.safe_load((out / "prometheus/prometheus.yml").read_text())["scrape_configs"]
    assert scrape["basic_auth"] == {"username": "admin", "password_file": str(cli.password_file)}
    assert scrape["static_configs"] == [{"targets": [cli.url.removeprefix("http://")]}]


def test_a_folder_with_files_needs_force(cli: Nuvem, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refused = cli.run("observability", "export", str(out), check=False)
    assert refused.returncode == 2
    assert "already holds files (notes.txt)" in refused.stderr
    assert "--force" in refused.stderr
    assert _files(out) == {"notes.txt"}
    cli.run("observability", "export", str(out), "--force")
    assert _files(out) == EXPECTED | {"notes.txt"}
    assert (out / "notes.txt").read_text() == "mine"


def test_a_bad_gateway_url_is_refused(cli: Nuvem, tmp_path: Path) -> None:
    refused = cli.run(
        "observability", "export", str(tmp_path / "out"), "--gateway", "ftp://x", check=False
    )
    assert refused.returncode == 2
    assert "not a gateway URL: 'ftp://x'" in refused.stderr
    assert not (tmp_path / "out").exists()
