"""The pieces nuvem's dashboards are made of: a PromQL query, a time series panel, a stat,
a dashboard with nuvem's defaults, and the PromQL the panels share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE_UID = "nuvem-prometheus"
FUNCTION_VARIABLE = "function"
TAGS = ["nuvem"]
RATE = "$__rate_interval"
CALLS = "gateway_function_invocation_total"
FN = f'function_name="${FUNCTION_VARIABLE}"'

SOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = ""


def targets(queries: list[Query]) -> list[Builder[Dataquery]]:
    return [
        prometheus.Dataquery()
        .expr(q.expr)
        .legend_format(q.legend or "__auto")
        .ref_id(chr(ord("A") + i))
        .datasource(SOURCE)
        for i, q in enumerate(queries)
    ]


def series(title: str, unit: str, *queries: Query, description: str = "") -> Any:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(SOURCE)
        .unit(unit)
        .span(12)
        .height(8)
        .targets(targets(list(queries)))
    )


def stat_panel(title: str, unit: str, query: Query, description: str = "") -> Any:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(SOURCE)
        .unit(unit)
        .span(4)
        .height(4)
        .targets(targets([query]))
    )


def new_board(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
    )


def error_ratio(by: str = "", match: str = "") -> str:
    group = f" by ({by})" if by else ""
    extra = f",{match}" if match else ""
    return (
        f'sum{group} (rate({CALLS}{{code=~"5.."{extra}}}[{RATE}])) '
        f"/ sum{group} (rate({CALLS}{{{match}}}[{RATE}]))"
    )


def quantile(q: float, histogram: str, by: str, match: str = "") -> str:
    selector = f"{{{match}}}" if match else ""
    return f"histogram_quantile({q}, sum by ({by}) (rate({histogram}_bucket{selector}[{RATE}])))"
