"""Autoscaling on a three-node cluster: the replicas it adds spread over the nodes; it shrinks back; 0 lost.

The cluster runs in a subprocess (``autoscaling_cluster.py``), as in ``test_multinode.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster_run import run_cluster_script

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("autoscaling_cluster.py")
DEADLINE = 420


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return run_cluster_script(SCRIPT, DEADLINE)


def test_the_replicas_added_under_load_run_on_more_than_one_node(run: dict[str, Any]) -> None:
    assert len(run["peak_nodes"]) >= 3, "it scaled up under the burst"
    assert set(run["peak_nodes"]) == set(run["nodes"].values()), "SPREAD over both nodes that have the resource"


def test_every_message_is_answered_and_it_shrinks_back_after_the_load(run: dict[str, Any]) -> None:
    assert run["answered"] == sorted(run["injected"])
    assert run["replicas_after"] == ["0"]
    assert run["autoscaling"]["last_decision"]["target"] == 1
    assert run["failures"] == []
