"""The alert rules as exported: `promtool check rules`, and `promtool test rules` on the unit
tests shipped beside them (each alert has a case that fires and one that does not)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from nuvem.metrics.alert_rule_tests import covered_alerts, render, rule_tests_file
from nuvem.metrics.alert_rules import SCALE_LABEL, Thresholds, alert_rules, rules_file


def _write(folder: Path, rules: Thresholds, tests: Thresholds) -> Path:
    (folder / "nuvem.rules.yml").write_text(yaml.safe_dump(rules_file(alert_rules(rules))))
    test_file = folder / "nuvem.rules.test.yml"
    test_file.write_text(yaml.safe_dump(rule_tests_file("nuvem.rules.yml", tests)))
    return test_file


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)


def test_promtool_checks_and_tests_the_rules(tmp_path: Path, promtool: str) -> None:
    test_file = _write(tmp_path, Thresholds(), Thresholds())
    checked = _promtool(promtool, "check", "rules", str(tmp_path / "nuvem.rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    tested = _promtool(promtool, "test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_rule_tests_fail_when_a_rule_drifts(tmp_path: Path, promtool: str) -> None:
    # The queue alert made stricter than its tests expect: the firing case no longer fires.
    test_file = _write(tmp_path, Thresholds(queue_share=0.95), Thresholds())
    tested = _promtool(promtool, "test", "rules", str(test_file))
    assert tested.returncode != 0
    assert "NuvemQueueNearFull" in tested.stdout + tested.stderr


def test_rule_tests_with_other_thresholds_pass_too(tmp_path: Path, promtool: str) -> None:
    changed = Thresholds(
        dead_letter_jobs=5, crash_restarts=30, crash_window="20m", node_window="30m"
    )
    tested = _promtool(promtool, "test", "rules", str(_write(tmp_path, changed, changed)))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_case_that_fires() -> None:
    assert covered_alerts() == {rule.name for rule in alert_rules()}


def test_rules_say_what_and_how_to_fix_and_scale_only_on_load() -> None:
    for rule in alert_rules():
        assert rule.summary
        assert len(rule.description) > 80, rule.name
        per_function = "function_name" in rule.signal
        assert per_function == ("{{ $labels.function_name }}" in rule.summary), rule.name
    scaling = {r.name for r in alert_rules() if SCALE_LABEL in r.as_rule()["labels"]}
    assert scaling == {"NuvemQueueNearFull", "NuvemLatencyNearDeadline"}


def test_signal_and_threshold_are_separable() -> None:
    for rule in alert_rules(Thresholds(error_ratio=0.2)):
        assert rule.expr.startswith(rule.signal)
        assert rule.as_rule()["expr"] == rule.expr
    (errors,) = [r for r in alert_rules(Thresholds(error_ratio=0.2)) if "Error" in r.name]
    assert errors.expr.endswith("> 0.2")


def test_templates_render_like_prometheus() -> None:
    labels = {"function_name": "echo"}
    assert (
        render("{{ $labels.function_name }} at {{ $value | humanizePercentage }}", labels, 0.5)
        == "echo at 50%"
    )
    assert render("{{$value}} and {{ $value | humanize }}", labels, 3) == "3 and 3"
