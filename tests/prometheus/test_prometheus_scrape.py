"""A real Prometheus scrapes ``/metrics`` of a real deployment; its query API returns what was sent.

Debian's ``prometheus`` server runs on a free 127.0.0.1 port with a temp data
dir and scrapes ``serve_metrics`` of the seed deployment every second. After
N messages, ``/api/v1/query`` must return ``ray_dispatch_messages_total``
with the deployment's labels and the value N. Skips only outside CI when the
binary is missing (``.ci/run`` installs it).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import ray_dispatch
from ray_dispatch.api import Deployment
from ray_dispatch.console.prometheus import serve_metrics
from tests.peers.net import free_port
from tests.peers.prometheus_server import PrometheusServer, prometheus_available
from tests.prometheus.dashboard import as_instant_query, dashboard_queries, load_dashboard, variable_queries
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

SENT = 7
NAME = "prom-scrape"


@contextmanager
def serving_metrics(deployment: Deployment) -> Iterator[int]:
    """``serve_metrics`` on its own event loop in a thread; yield its port, stop it at the end."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="metrics-server", daemon=True)
    thread.start()
    runner, port = asyncio.run_coroutine_threadsafe(serve_metrics(deployment, "127.0.0.1", 0), loop).result(60)
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()


@pytest.fixture
def prometheus_binary() -> None:
    if not prometheus_available():
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed; .ci/run installs Debian's prometheus package")
        pytest.skip("prometheus is not installed (apt-get install prometheus; .ci/run installs it)")


def _total(result: list[dict[str, Any]]) -> float:
    return sum(float(series["value"][1]) for series in result)


def test_prometheus_query_api_returns_messages_total_with_labels_and_the_count_sent(
    ray_session: None, prometheus_binary: None, tmp_path: Path
) -> None:
    deployment = ray_dispatch.deploy("examples/seed.yaml", name=NAME)
    try:
        with serving_metrics(deployment) as metrics_port:
            server = PrometheusServer(tmp_path, free_port(), f"127.0.0.1:{metrics_port}")
            server.start()
            try:
                for i in range(SENT):
                    deployment.send("xmpp_transport", f"count me {i}", from_addr="bob@example.org")
                received = (
                    f'ray_dispatch_messages_total{{deployment="{NAME}",endpoint="xmpp_transport",'
                    'direction="inbound",stage="received"}'
                )
                published = (
                    f'ray_dispatch_messages_total{{deployment="{NAME}",endpoint="my_application",'
                    'direction="inbound",stage="published"}'
                )

                def both_counted() -> list[list[dict[str, Any]]] | None:
                    results = [server.query(received), server.query(published)]
                    return results if all(_total(result) == SENT for result in results) else None

                both = wait_for(both_counted, timeout=180, interval=0.5)
                diagnosis = f"targets: {server.targets()}\nlog:\n{server.log_tail()}"
                assert both, f"prometheus never had {SENT} for both series\n{diagnosis}"
                for result in both:
                    assert _total(result) == SENT
                    for series in result:
                        assert set(series["metric"]) == {
                            "__name__", "deployment", "dispatcher", "endpoint", "direction", "stage", "instance", "job",
                        }  # fmt: skip
                        assert series["metric"]["job"] == "ray_dispatch"
                        assert series["metric"]["instance"] == f"127.0.0.1:{metrics_port}"
                        assert series["metric"]["deployment"] == NAME

                replicas = server.query(
                    f'ray_dispatch_replicas{{deployment="{NAME}",endpoint="my_application",state="alive"}}'
                )
                assert _total(replicas) == 2, diagnosis
                # histograms arrive as histograms: Prometheus computes a quantile from their buckets
                [median] = server.query(
                    f'histogram_quantile(0.5, sum by (le) (ray_dispatch_e2e_latency_ms_bucket{{deployment="{NAME}"}}))'
                )
                assert float(median["value"][1]) > 0 and math.isfinite(float(median["value"][1])), diagnosis
                # every query of the Grafana dashboard parses and runs in this Prometheus
                answers = {
                    query: server.query(as_instant_query(query, NAME)) for query in dashboard_queries(load_dashboard())
                }
                received_rate = as_instant_query(next(q for q in answers if 'stage="received"' in q), NAME)
                # a rate needs two scrapes of the series: wait (bounded) for the second one
                assert wait_for(lambda: server.query(received_rate), timeout=60, interval=0.5), diagnosis
                [variable] = variable_queries(load_dashboard())
                assert NAME in {series["metric"]["deployment"] for series in answers[variable]}
            finally:
                server.stop()
        assert server.process is None
    finally:
        deployment.shutdown()
