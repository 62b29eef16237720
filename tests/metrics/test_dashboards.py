"""The dashboards offline (Grafana cannot be installed here): they round-trip through the
SDK's models of Grafana's schema, and their structure holds what Grafana needs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard

from nuvem.metrics.dashboards import DATASOURCE_UID, FUNCTION_VARIABLE, dashboards, to_json

BOARDS = {stem: json.loads(to_json(board)) for stem, board in dashboards().items()}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


@pytest.mark.parametrize("stem", sorted(BOARDS))
def test_json_round_trips_through_the_sdk_models(stem: str) -> None:
    parsed = Dashboard.from_json(BOARDS[stem])
    assert json.loads(to_json(parsed)) == BOARDS[stem]


def test_three_dashboards_with_unique_uids_and_titles() -> None:
    assert sorted(BOARDS) == ["nuvem-function", "nuvem-nodes", "nuvem-overview"]
    assert len({b["uid"] for b in BOARDS.values()}) == 3
    assert len({b["title"] for b in BOARDS.values()}) == 3
    assert all(b["uid"] == stem for stem, b in BOARDS.items())  # file name = uid


@pytest.mark.parametrize("stem", sorted(BOARDS))
def test_every_panel_queries_prometheus_with_promql(stem: str) -> None:
    board = BOARDS[stem]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in _panels(board):
        assert panel["targets"], f"{panel['title']} has no query"
        assert panel["datasource"]["uid"] == DATASOURCE_UID
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)
        for target in panel["targets"]:
            assert re.search(r"\b(gateway|nuvem)_\w+", target["expr"]), target["expr"]
            assert target["expr"].count("(") == target["expr"].count(")")


def test_panels_do_not_overlap() -> None:
    for board in BOARDS.values():
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            g = panel["gridPos"]
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, f"{board['uid']}: {panel['title']} overlaps"
            assert g["x"] + g["w"] <= 24
            cells |= mine


def test_function_dashboard_is_driven_by_its_variable() -> None:
    board = BOARDS["nuvem-function"]
    (variable,) = board["templating"]["list"]
    assert variable["name"] == FUNCTION_VARIABLE
    assert variable["type"] == "query"
    assert "function_name" in variable["query"]
    for panel in _panels(board):
        for target in panel["targets"]:
            assert f'function_name="${FUNCTION_VARIABLE}"' in target["expr"], panel["title"]


def test_other_dashboards_cover_every_function() -> None:
    for stem in ("nuvem-overview", "nuvem-nodes"):
        exprs = [t["expr"] for p in _panels(BOARDS[stem]) for t in p["targets"]]
        assert not any("$" + FUNCTION_VARIABLE in e for e in exprs)
