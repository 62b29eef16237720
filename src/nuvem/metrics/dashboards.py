"""nuvem's Grafana dashboards, built with grafana-foundation-sdk: the platform overview,
one function (picked with the `function` variable), and the nodes and scaling.

Every panel queries the Prometheus data source `DATASOURCE_UID` (grafana_provisioning.py
provisions it); the queries use only nuvem's own series (metrics/registry.py).
"""

from __future__ import annotations

import json

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel
from grafana_foundation_sdk.models.dashboard import (
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from nuvem.metrics.dashboard_panels import (
    CALLS,
    DATASOURCE_UID,
    FN,
    FUNCTION_VARIABLE,
    RATE,
    SOURCE,
    Query,
    error_ratio,
    new_board,
    quantile,
    series,
    stat_panel,
)

__all__ = ["DATASOURCE_UID", "FUNCTION_VARIABLE", "dashboards", "to_json"]


def overview() -> DashboardModel:
    return (
        new_board("nuvem-overview", "nuvem / platform", "Every function at a glance.")
        .with_row(dashboard.Row("Now"))
        .with_panel(stat_panel("Functions", "none", Query("count(gateway_service_count)")))
        .with_panel(stat_panel("Ready replicas", "none", Query("sum(gateway_service_count)")))
        .with_panel(stat_panel("Calls", "reqps", Query(f"sum(rate({CALLS}[{RATE}]))")))
        .with_panel(stat_panel("Errors (5xx)", "percentunit", Query(error_ratio())))
        .with_panel(stat_panel("Alive nodes", "none", Query('sum(nuvem_nodes{state="alive"})')))
        .with_panel(
            stat_panel("Dead-letter jobs", "none", Query('sum(nuvem_jobs{state="dead_letter"})'))
        )
        .with_row(dashboard.Row("Functions"))
        .with_panel(
            series(
                "Calls by function",
                "reqps",
                Query(f"sum by (function_name) (rate({CALLS}[{RATE}]))", "{{function_name}}"),
            )
        )
        .with_panel(
            series(
                "Error ratio by function",
                "percentunit",
                Query(error_ratio("function_name"), "{{function_name}}"),
                description="Share of calls answered 5xx.",
            )
        )
        .with_panel(
            series(
                "p99 latency by function",
                "s",
                Query(
                    quantile(0.99, "gateway_functions_seconds", "function_name, le"),
                    "{{function_name}}",
                ),
                description="Queueing included.",
            )
        )
        .with_panel(
            series(
                "Waiting calls by function",
                "none",
                Query("sum by (function_name) (nuvem_function_queue_depth)", "{{function_name}}"),
            )
        )
        .with_panel(
            series(
                "Ready replicas by function",
                "none",
                Query("sum by (function_name) (gateway_service_count)", "{{function_name}}"),
            )
        )
        .with_panel(
            series("Async jobs by state", "none", Query("sum by (state) (nuvem_jobs)", "{{state}}"))
        )
        .build()
    )


def function() -> DashboardModel:
    choose = (
        dashboard.QueryVariable(FUNCTION_VARIABLE)
        .label("Function")
        .datasource(SOURCE)
        .query("label_values(gateway_service_count, function_name)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .current(VariableOption(selected=False, text="", value=""))
    )
    latency = "gateway_functions_seconds"
    return (
        new_board("nuvem-function", "nuvem / function", "One function: calls, latency, replicas.")
        .with_variable(choose)
        .with_row(dashboard.Row("Calls"))
        .with_panel(
            series(
                "Calls by status code",
                "reqps",
                Query(f"sum by (code) (rate({CALLS}{{{FN}}}[{RATE}]))", "{{code}}"),
            )
        )
        .with_panel(
            series(
                "Latency",
                "s",
                Query(quantile(0.5, latency, "le", FN), "p50"),
                Query(quantile(0.9, latency, "le", FN), "p90"),
                Query(quantile(0.99, latency, "le", FN), "p99"),
                description="Queueing included.",
            )
        )
        .with_panel(
            series(
                "p99 as a share of the deadline",
                "percentunit",
                Query(
                    f"{quantile(0.99, latency, 'le', FN)} "
                    f"/ scalar(max(nuvem_function_timeout_seconds{{{FN}}}))",
                    "p99 / timeout",
                ),
                description="Near 100% calls start to time out (504).",
            )
        )
        .with_panel(series("Error ratio", "percentunit", Query(error_ratio(match=FN), "5xx")))
        .with_row(dashboard.Row("Replicas and queue"))
        .with_panel(
            series(
                "Replicas",
                "none",
                Query(f"sum(gateway_service_count{{{FN}}})", "ready"),
                Query(f"sum(nuvem_replicas_desired{{{FN}}})", "desired"),
                Query(f"sum by (state) (nuvem_replicas{{{FN}}})", "{{state}}"),
            )
        )
        .with_panel(
            series(
                "Calls running and waiting",
                "none",
                Query(f"sum(nuvem_function_inflight{{{FN}}})", "running"),
                Query(f"sum(nuvem_function_queue_depth{{{FN}}})", "waiting"),
                Query(f"max(nuvem_function_queue_capacity{{{FN}}})", "queue capacity"),
            )
        )
        .with_panel(
            series(
                "Cold and replica starts (p90)",
                "s",
                Query(quantile(0.9, "nuvem_cold_start_seconds", "le", FN), "cold call"),
                Query(quantile(0.9, "nuvem_replica_start_seconds", "le", FN), "replica start"),
            )
        )
        .with_panel(
            series(
                "Replica deaths by cause",
                "none",
                Query(
                    f"sum by (cause) (increase(nuvem_replica_restarts_total{{{FN}}}[{RATE}]))",
                    "{{cause}}",
                ),
            )
        )
        .with_panel(
            series(
                "Scaling decisions",
                "none",
                Query(
                    f"sum by (kind, direction) "
                    f"(increase(nuvem_scaling_decisions_total{{{FN}}}[{RATE}]))",
                    "{{kind}} {{direction}}",
                ),
            )
        )
        .with_panel(
            series(
                "Async jobs by state",
                "none",
                Query(f"sum by (state) (nuvem_jobs{{{FN}}})", "{{state}}"),
            )
        )
        .build()
    )


def nodes() -> DashboardModel:
    return (
        new_board("nuvem-nodes", "nuvem / nodes and scaling", "The cluster and the autoscaler.")
        .with_row(dashboard.Row("Nodes"))
        .with_panel(
            series("Nodes by state", "none", Query("sum by (state) (nuvem_nodes)", "{{state}}"))
        )
        .with_panel(series("Nodes lost", "none", Query("max(nuvem_nodes_lost)", "lost")))
        .with_panel(
            series(
                "Replica starts waiting for room",
                "none",
                Query("sum by (short) (nuvem_replicas_pending)", "short of {{short}}"),
                description="Starts no node has room for yet, by what is short.",
            )
        )
        .with_row(dashboard.Row("Scaling"))
        .with_panel(
            series(
                "Replicas: desired and ready",
                "none",
                Query("sum(nuvem_replicas_desired)", "desired"),
                Query("sum(gateway_service_count)", "ready"),
                Query("sum by (state) (nuvem_replicas)", "{{state}}"),
            )
        )
        .with_panel(
            series(
                "Scaling decisions",
                "none",
                Query(
                    f"sum by (kind, direction) (increase(nuvem_scaling_decisions_total[{RATE}]))",
                    "{{kind}} {{direction}}",
                ),
                description="autoscaled, scaled (nuvem scale) or alert (Alertmanager).",
            )
        )
        .with_panel(
            series(
                "Controller step (p99)",
                "s",
                Query(quantile(0.99, "nuvem_controller_tick_seconds", "le"), "p99"),
            )
        )
        .with_panel(
            series(
                "Environment builds (p90)",
                "s",
                Query(quantile(0.9, "nuvem_environment_build_seconds", "le"), "p90"),
            )
        )
        .build()
    )


def _numbered(board: DashboardModel) -> DashboardModel:
    # Panel ids are unique within a dashboard; links and alerts refer to them.
    for number, panel in enumerate(board.panels or [], start=1):
        panel.id_val = number
    return board


def dashboards() -> dict[str, DashboardModel]:
    """File stem -> dashboard."""
    boards = {"nuvem-overview": overview(), "nuvem-function": function(), "nuvem-nodes": nodes()}
    return {stem: _numbered(board) for stem, board in boards.items()}


def to_json(board: DashboardModel) -> str:
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
