"""``docs/grafana-dashboard.json`` is valid and built only on metric names ``/metrics`` writes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ray_dispatch.console.prometheus import FAMILIES, render_metrics
from tests.prometheus.dashboard import METRIC_NAME, dashboard_queries, load_dashboard
from tests.prometheus.snapshot import STATUS


def _exported_sample_names() -> set[str]:
    body, _ = render_metrics(STATUS)
    return {sample.name for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def test_the_dashboard_is_grafana_json_with_a_query_in_every_panel() -> None:
    dashboard = load_dashboard()
    assert dashboard["title"] == "ray_dispatch" and dashboard["uid"] == "ray-dispatch"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "deployment"} <= variables


def test_every_metric_name_in_the_dashboard_is_one_the_renderer_writes() -> None:
    exported = _exported_sample_names()
    used = {name for query in dashboard_queries(load_dashboard()) for name in METRIC_NAME.findall(query)}
    assert used, "the dashboard queries no ray_dispatch metric"
    assert sorted(used - exported) == []


def test_every_family_the_renderer_writes_has_a_panel() -> None:
    used = {name for query in dashboard_queries(load_dashboard()) for name in METRIC_NAME.findall(query)}
    suffixes = ("", "_bucket", "_count", "_sum")
    unused = [f.name for f in FAMILIES if not any(f.name + suffix in used for suffix in suffixes)]
    assert unused == []
