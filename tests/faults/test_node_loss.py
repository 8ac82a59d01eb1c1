"""Remove a worker node of a ``ray.cluster_utils.Cluster`` in the middle of 10,000 messages: none is lost.

The cluster runs in a subprocess (``node_loss_cluster.py``; a process holds
one Ray connection and the session's is taken) with its own Ray temp dir
and in its own process group, so an overrun kills all of it. Application
replica 0 runs on the node that is removed, replica 1 on a spare node with
room for replica 0 to be restarted (``max_restarts: -1``).

It runs twice: with the fast node health checks ``cluster.yaml`` ships, and
with Ray's defaults, where the node is declared dead only after ~15 s and the
dispatcher's own deadline-and-probe (``actors.watchdog``) must fail over first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cluster_run import run_cluster_script

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("node_loss_cluster.py")
DEADLINE = 240
MESSAGES = 10_000


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    return run_cluster_script(SCRIPT, DEADLINE, "--messages", str(MESSAGES))


def test_replica_zero_ran_on_the_removed_node_and_came_back_on_the_spare(run: dict[str, Any]) -> None:
    nodes = run["nodes"]
    assert run["before"] == {"0": nodes["victim"], "1": nodes["spare"]}
    assert run["after"] == {"0": nodes["spare"], "1": nodes["spare"]}


def test_the_node_went_mid_stream_and_the_dispatcher_felt_it(run: dict[str, Any]) -> None:
    assert 0 < run["at_removal"] < MESSAGES
    retries = run["app_senders"].get("0", {}).get("retries", 0)
    assert retries > 0 or run["dead_replicas"], run["app_senders"]
    assert all(run["per_replica"].get(f"app:{r}", 0) > 0 for r in "01"), run["per_replica"]


def test_no_message_was_lost_or_failed(run: dict[str, Any]) -> None:
    assert run["sent"] == run["distinct_sent"] == MESSAGES
    assert run["lost"] == 0, f"{run['lost']} of {MESSAGES} lost, e.g. {run['lost_sample']}"
    assert run["failures"] == []
    twice = run["received"] - MESSAGES  # handled by the dying replica but not confirmed: delivered again
    after = run["seconds_to_finish_after_removal"]
    print(f"\nnode loss: {MESSAGES} sent, 0 lost, {twice} delivered twice, stream done {after} s after the removal")
    pause, user_pause = run["longest_pause_after_removal"], run["longest_user_pause_after_removal"]
    print(f"node loss, cluster.yaml's health checks: longest pause {pause} s (one user: {user_pause} s)")


@pytest.fixture(scope="module")
def run_with_ray_defaults() -> dict[str, Any]:
    return run_cluster_script(SCRIPT, DEADLINE, "--messages", str(MESSAGES), "--ray-default-health-checks")


def test_with_rays_default_health_checks_the_dispatcher_fails_over_before_ray_declares_the_node_dead(
    run_with_ray_defaults: dict[str, Any],
) -> None:
    run = run_with_ray_defaults
    assert run["sent"] == run["distinct_sent"] == MESSAGES
    assert run["lost"] == 0 and run["failures"] == []
    [evicted] = run["dead_replicas"]
    assert evicted["replica_id"] == "0" and "a probe got no answer" in evicted["error"], evicted
    pause, user_pause = run["longest_pause_after_removal"], run["longest_user_pause_after_removal"]
    print(f"\nnode loss, Ray's default health checks: longest pause {pause} s (one user: {user_pause} s)")
