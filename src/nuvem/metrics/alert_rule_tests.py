"""Unit tests of the alert rules, in `promtool test rules` form, built from the same
thresholds as the rules: each alert has series that make it fire and series that do not.

The expected annotations are the rules' templates filled in here (promtool compares them
whole), so a template that renders wrong fails the test too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nuvem.metrics.alert_rules import AlertRule, Thresholds, alert_rules

_TEMPLATE = re.compile(r"\{\{\s*\$(labels\.(\w+)|value)\s*(?:\|\s*(\w+)\s*)?\}\}")
SCRAPED = {"job": "nuvem", "instance": "gateway:8080"}


@dataclass(frozen=True, slots=True)
class Fired:
    labels: dict[str, str]  # the series' labels the alert keeps (before the rule's own)
    value: float  # the signal's value when it fires, for the annotations


@dataclass(frozen=True, slots=True)
class Case:
    alert: str
    series: dict[str, str]  # series selector -> promtool's values notation (one a minute)
    eval_minutes: int
    fired: list[Fired] = field(default_factory=list)


def _selector(name: str, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted({**SCRAPED, **labels}.items()))
    return f"{name}{{{inner}}}"


def _minutes(duration: str) -> int:
    """`10m` or `1h` in whole minutes (the windows the thresholds use)."""
    number, unit = int(duration[:-1]), duration[-1]
    return number * 60 if unit == "h" else number


def _cases(t: Thresholds) -> list[Case]:
    # Series an hour long, so every window the thresholds name lies inside the data and
    # `increase` needs no extrapolation (its value is then exact for the annotations).
    hour = 60
    crash_window = _minutes(t.crash_window)
    deaths = t.crash_restarts // crash_window + 1  # a minute: enough to fire in the window
    calls = "gateway_function_invocation_total"
    bucket = "gateway_functions_seconds_bucket"
    restarts = "nuvem_replica_restarts_total"
    per_minute = 60
    return [
        Case(
            "NuvemReplicaCrashLoop",
            {
                # deaths every minute, against a function that never dies
                _selector(restarts, function_name="crashy", cause="exited"): f"0+{deaths}x{hour}",
                _selector(restarts, function_name="steady", cause="exited"): f"0x{hour}",
            },
            hour,
            [Fired({"function_name": "crashy"}, deaths * crash_window)],
        ),
        Case(
            "NuvemFunctionErrorRatio",
            {
                _selector(calls, function_name="flaky", code="500"): f"0+{per_minute}x20",
                _selector(calls, function_name="flaky", code="200"): f"0+{per_minute}x20",
                _selector(calls, function_name="healthy", code="500"): "0x20",
                _selector(calls, function_name="healthy", code="200"): f"0+{per_minute}x20",
            },
            15,
            [Fired({"function_name": "flaky"}, 0.5)],
        ),
        Case(
            "NuvemLatencyNearDeadline",
            {
                # slow: every call between 1 s and 10 s (its deadline); fast: all below 1 s
                _selector(bucket, function_name="slow", code="200", le="1.0"): "0x20",
                _selector(bucket, function_name="slow", code="200", le="10.0"): "0+60x20",
                _selector(bucket, function_name="slow", code="200", le="+Inf"): "0+60x20",
                _selector("nuvem_function_timeout_seconds", function_name="slow"): "10x20",
                _selector(bucket, function_name="fast", code="200", le="1.0"): "0+60x20",
                _selector(bucket, function_name="fast", code="200", le="10.0"): "0+60x20",
                _selector(bucket, function_name="fast", code="200", le="+Inf"): "0+60x20",
                _selector("nuvem_function_timeout_seconds", function_name="fast"): "10x20",
            },
            10,
            [Fired({"function_name": "slow"}, 0.991)],
        ),
        Case(
            "NuvemQueueNearFull",
            {
                _selector("nuvem_function_queue_depth", function_name="busy"): "9x10",
                _selector("nuvem_function_queue_capacity", function_name="busy"): "10x10",
                _selector("nuvem_function_queue_depth", function_name="idle"): "1x10",
                _selector("nuvem_function_queue_capacity", function_name="idle"): "10x10",
            },
            5,
            [Fired({"function_name": "busy"}, 0.9)],
        ),
        Case(
            "NuvemJobsDeadLetter",
            {
                _selector(
                    "nuvem_jobs", function_name="batch", state="dead_letter"
                ): f"{t.dead_letter_jobs + 2}x5",
                _selector("nuvem_jobs", function_name="batch", state="queued"): "5x5",
                _selector("nuvem_jobs", function_name="clean", state="dead_letter"): (
                    f"{t.dead_letter_jobs}x5"
                ),
                _selector("nuvem_jobs", function_name="clean", state="queued"): "7x5",
            },
            5,
            [Fired({"function_name": "batch"}, t.dead_letter_jobs + 2)],
        ),
        Case(
            "NuvemNodeLost",
            {_selector("nuvem_nodes_lost"): "0x5 1x10"},
            10,
            [Fired(dict(SCRAPED), 1)],
        ),
        Case("NuvemNodeLost", {_selector("nuvem_nodes_lost"): "0x20"}, 15),
        Case(
            "NuvemGatewayDown",
            {
                'up{instance="down:8080",job="nuvem"}': "0x5",
                'up{instance="up:8080",job="nuvem"}': "1x5",
            },
            5,
            [Fired({"instance": "down:8080", "job": "nuvem"}, 0)],
        ),
    ]


def _format(value: float, how: str | None) -> str:
    """Prometheus' template functions, for the values the cases use."""
    if how == "humanizePercentage":
        return f"{value * 100:.4g}%"
    if how == "humanize":
        return f"{value:.4g}"
    return f"{value:g}"


def render(template: str, labels: dict[str, str], value: float) -> str:
    def fill(match: re.Match[str]) -> str:
        if match.group(2) is not None:
            return labels.get(match.group(2), "")
        return _format(value, match.group(3))

    return _TEMPLATE.sub(fill, template)


def _expected(rule: AlertRule, fired: Fired) -> dict[str, Any]:
    labels = dict(fired.labels)
    labels.update(rule.as_rule()["labels"])
    return {
        "exp_labels": labels,
        "exp_annotations": {
            "summary": render(rule.summary, fired.labels, fired.value),
            "description": render(rule.description, fired.labels, fired.value),
        },
    }


def rule_tests_file(rules_file: str, t: Thresholds | None = None) -> dict[str, Any]:
    """The `promtool test rules` file for the rules in `rules_file` (a path relative to
    the test file)."""
    t = t or Thresholds()
    by_name = {rule.name: rule for rule in alert_rules(t)}
    tests = []
    for case in _cases(t):
        rule = by_name[case.alert]
        tests.append(
            {
                "name": f"{case.alert}: {'fires' if case.fired else 'stays quiet'}",
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": f"{case.eval_minutes}m",
                        "alertname": case.alert,
                        "exp_alerts": [_expected(rule, fired) for fired in case.fired],
                    }
                ],
            }
        )
    return {"rule_files": [rules_file], "evaluation_interval": "1m", "tests": tests}


def covered_alerts(t: Thresholds | None = None) -> set[str]:
    """The alerts with a case that fires (every rule should have one)."""
    return {case.alert for case in _cases(t or Thresholds()) if case.fired}
