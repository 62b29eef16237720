"""Prometheus alert rules for nuvem, built from named thresholds.

Each rule keeps its *signal* (the PromQL whose value is watched) apart from its
*threshold*, so a test can evaluate the signal against a real Prometheus and see series
even while nothing fires. Per-function rules aggregate `by (function_name)`: the label
reaches `/system/alert`, which scales the function it names. Only the rules labelled
`nuvem_action: scale` are routed there (alertmanager_config.py): a firing alert adds
replicas, a resolved one returns the function to its min, which suits a queue that
fills or a latency that nears the deadline, not a crash loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

GROUP = "nuvem"
SCALE_LABEL = "nuvem_action"
SCALE_VALUE = "scale"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When each alert fires. Durations are Prometheus durations (`30s`, `5m`)."""

    crash_restarts: int = 3  # replica deaths of one function within crash_window
    crash_window: str = "10m"
    error_ratio: float = 0.05  # share of calls answered 5xx, over rate_window
    error_for: str = "5m"
    deadline_share: float = 0.8  # p99 latency as a share of the function's timeout
    latency_for: str = "2m"
    queue_share: float = 0.8  # queue depth as a share of max_queue, peak over queue_window
    queue_window: str = "1m"
    queue_for: str = "30s"
    dead_letter_jobs: int = 0  # fires above this many jobs kept in dead letter
    node_window: str = "15m"  # a node lost within this long
    rate_window: str = "5m"
    scrape_job: str = "nuvem"  # the scrape job's name in prometheus.yml


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    signal: str  # PromQL; the alert fires while `signal op threshold` holds
    op: Literal[">", ">=", "<"]
    threshold: float
    for_: str
    severity: Literal["warning", "critical"]
    summary: str
    description: str
    scales: bool = False  # routed to /system/alert, which adds replicas while it fires

    @property
    def expr(self) -> str:
        return f"{self.signal} {self.op} {self.threshold:g}"

    def as_rule(self) -> dict[str, Any]:
        labels: dict[str, str] = {"severity": self.severity}
        if self.scales:
            labels[SCALE_LABEL] = SCALE_VALUE
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": labels,
            "annotations": {"summary": self.summary, "description": self.description},
        }


def alert_rules(t: Thresholds | None = None) -> list[AlertRule]:
    t = t or Thresholds()
    w = t.rate_window
    fn = "{{ $labels.function_name }}"
    calls = "gateway_function_invocation_total"
    return [
        AlertRule(
            name="NuvemReplicaCrashLoop",
            signal=f"sum by (function_name) (increase(nuvem_replica_restarts_total"
            f"[{t.crash_window}]))",
            op=">=",
            threshold=t.crash_restarts,
            for_="0s",
            severity="critical",
            summary=f"{fn}: replicas keep dying",
            description=f"{{{{ $value | humanize }}}} replicas of {fn} died in the last "
            f"{t.crash_window} and were replaced. `nuvem events` names each exit cause "
            f"(out of memory, a crash, a failing setup); `nuvem logs {fn}` shows the "
            "handler's last words. Fix the handler, or raise resources.memory in the stack.",
        ),
        AlertRule(
            name="NuvemFunctionErrorRatio",
            signal=f'sum by (function_name) (rate({calls}{{code=~"5.."}}[{w}])) '
            f"/ sum by (function_name) (rate({calls}[{w}]))",
            op=">",
            threshold=t.error_ratio,
            for_=t.error_for,
            severity="warning",
            summary=f"{fn}: {{{{ $value | humanizePercentage }}}} of calls fail",
            description=f"More than {t.error_ratio:.0%} of the calls to {fn} answered 5xx "
            f"over {w}. 500 is the handler raising (see `nuvem logs {fn}`); 503 and 429 "
            "mean no room (raise scaling.max or max_queue); 504 means calls outlive the "
            "function's timeout.",
        ),
        AlertRule(
            name="NuvemLatencyNearDeadline",
            signal=f"histogram_quantile(0.99, sum by (function_name, le) "
            f"(rate(gateway_functions_seconds_bucket[{w}]))) / on (function_name) "
            "max by (function_name) (nuvem_function_timeout_seconds)",
            op=">",
            threshold=t.deadline_share,
            for_=t.latency_for,
            severity="warning",
            summary=f"{fn}: p99 latency is {{{{ $value | humanizePercentage }}}} of its deadline",
            description=f"The slowest 1% of calls to {fn} take more than "
            f"{t.deadline_share:.0%} of the function's timeout (queueing included); soon "
            "they will time out. nuvem adds replicas while this fires; if it stays, raise "
            "scaling.max, lower max_inflight or make the handler faster.",
            scales=True,
        ),
        AlertRule(
            name="NuvemQueueNearFull",
            signal=f"max by (function_name) (max_over_time(nuvem_function_queue_depth"
            f"[{t.queue_window}])) / on (function_name) max by (function_name) "
            "(nuvem_function_queue_capacity)",
            op=">",
            threshold=t.queue_share,
            for_=t.queue_for,
            severity="warning",
            summary=f"{fn}: its queue is {{{{ $value | humanizePercentage }}}} full",
            description=f"Calls to {fn} wait for a free replica and the queue nears "
            f"max_queue; once full, new calls are refused with 429. nuvem adds replicas "
            "while this fires; if it stays, raise scaling.max or max_inflight.",
            scales=True,
        ),
        AlertRule(
            name="NuvemJobsDeadLetter",
            signal='sum by (function_name) (nuvem_jobs{state="dead_letter"})',
            op=">",
            threshold=t.dead_letter_jobs,
            for_="0s",
            severity="warning",
            summary=f"{fn}: {{{{ $value }}}} async jobs in dead letter",
            description=f"Every attempt of these jobs of {fn} failed with a retried status. "
            f"`nuvem jobs ls --function {fn} --state dead_letter` lists them with their "
            "last error; fix the cause and submit them again. They go when their "
            "result_ttl ends.",
        ),
        AlertRule(
            name="NuvemNodeLost",
            signal=f"delta(nuvem_nodes_lost[{t.node_window}])",
            op=">",
            threshold=0,
            for_="0s",
            severity="critical",
            summary="a cluster node was lost",
            description=f"A node died without being drained in the last {t.node_window} "
            "(crashed, cut off or killed); its replicas were lost and are placed again "
            "elsewhere if there is room. `nuvem nodes` shows it with Ray's reason; restart "
            "`nuvem node join` there, or let its pool replace the machine.",
        ),
        AlertRule(
            name="NuvemGatewayDown",
            signal=f'up{{job="{t.scrape_job}"}}',
            op="<",
            threshold=1,
            for_="1m",
            severity="critical",
            summary="nuvem gateway {{ $labels.instance }} does not answer /metrics",
            description="Prometheus cannot scrape the gateway: it is down, or /metrics "
            "refuses the credentials. Check `nuvem up`'s log; with NUVEM_OPEN_METRICS=0 "
            "the scrape job needs the admin password file (prometheus.yml basic_auth).",
        ),
    ]


def rules_file(rules: list[AlertRule], interval: str | None = None) -> dict[str, Any]:
    """The rule file Prometheus loads (`rule_files:` in prometheus.yml)."""
    group: dict[str, Any] = {"name": GROUP, "rules": [r.as_rule() for r in rules]}
    if interval is not None:
        group["interval"] = interval
    return {"groups": [group]}
