"""A deployment on a three-node cluster: replicas placed by resources and SPREAD, messages flowing.

A process holds one Ray connection and the session's is taken, so the
cluster runs in a subprocess (``multinode_cluster.py``) with its own Ray temp
dir (its ``ray_current_cluster`` file must not redirect anyone else's
``ray.init``), in its own process group so an overrun kills all of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster_run import run_cluster_script

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("multinode_cluster.py")
DEADLINE = 240


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return run_cluster_script(SCRIPT, DEADLINE)


def test_application_replicas_spread_over_the_extra_nodes_by_resources(run: dict[str, Any]) -> None:
    nodes = run["nodes"]
    replicas = run["status"]["endpoints"]["edge_app"]["replicas"]
    assert len(replicas) == 4 and all(r["alive"] for r in replicas.values())
    placement = sorted(r["node_id"] for r in replicas.values())
    assert placement == sorted([nodes["node_a"]] * 2 + [nodes["node_b"]] * 2)


def test_the_transport_runs_on_the_node_with_its_resource(run: dict[str, Any]) -> None:
    [transport] = run["status"]["endpoints"]["sms"]["replicas"].values()
    assert transport["node_id"] == run["nodes"]["node_b"]
    assert len(set(run["nodes"].values())) == 3


def test_messages_cross_the_nodes_and_every_one_is_answered_once(run: dict[str, Any]) -> None:
    assert len(run["injected"]) == 200
    assert sorted(run["answered"]) == sorted(run["injected"])
    replicas = run["status"]["endpoints"]["edge_app"]["replicas"].values()
    assert sum(r["counters"].get("inbound_received", 0) for r in replicas) == 200
    assert all(r["counters"].get("inbound_received", 0) > 0 for r in replicas), "round-robin reaches every replica"
    assert sum(r["counters"].get("event_received", 0) for r in replicas) == 200, "each reply's ack came back"
    assert run["failures"] == []
