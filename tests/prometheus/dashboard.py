"""The Grafana dashboard shipped in ``docs/``: its PromQL queries, and the metric names they use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bray_dispatch_[a-z0-9_]+")


def load_dashboard() -> dict[str, Any]:
    """The dashboard JSON as a dict."""
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def panel_queries(dashboard: dict[str, Any]) -> list[str]:
    """Each panel target's ``expr`` (PromQL with Grafana's ``$`` variables)."""
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    """Each query variable's query (Grafana's ``label_values(metric, label)``)."""
    queries = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every query text in it: the panels' and the variables'."""
    return panel_queries(dashboard) + variable_queries(dashboard)


LABEL_VALUES = re.compile(r"^label_values\((\w+),\s*(\w+)\)$")


def as_instant_query(expr: str, deployment: str) -> str:
    """A dashboard query as PromQL for Prometheus's query API: variables filled in, ``label_values`` as ``group by``."""
    found = LABEL_VALUES.match(expr.strip())
    if found:
        return f"group by ({found[2]}) ({found[1]})"
    return expr.replace("$deployment", deployment).replace("$__rate_interval", "1m")
