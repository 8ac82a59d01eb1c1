"""Autoscale an application on a three-node ``ray.cluster_utils.Cluster``; print what ran where as JSON.

Run by ``test_autoscaling_multinode.py`` in a subprocess (a process holds one
Ray connection and the test session already has one). The last stdout line is
``RESULT <json>``.

Nodes: the head (no custom resources) and ``node_a`` / ``node_b`` with
``{"edge": 2}`` each. Every application replica asks for ``edge: 1`` with
SPREAD, so the replicas the autoscaler adds land on both extra nodes.
"""

from __future__ import annotations

import sys
from typing import Any

from tests.cluster_script import cluster_script_main
from tests.waiting import wait_for

MESSAGES = 3000

CONFIG: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["edge_app"],
    "route_mappings": {"sms": "edge_app"},
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport"},
        "edge_app": {
            "class": "tests.helpers_apps.SlowSink",
            "config": {"delay": 0.004, "reply": True},
            "actor_options": {"resources": {"edge": 1}, "scheduling_strategy": "SPREAD"},
            "autoscaling": {
                "min_replicas": 1,
                "max_replicas": 4,
                "target_pending_per_replica": 50,
                "upscale_delay_s": 0.5,
                "downscale_delay_s": 2,
                "interval_s": 0.25,
            },
        },
    },
}


def run_deployment(address: str) -> dict[str, Any]:
    """Deploy CONFIG, push a burst through it, record the replicas at the peak and after the load."""
    import ray

    import ray_dispatch

    ray.init(address=address, namespace="autoscaling", log_to_driver=False)
    dep = ray_dispatch.deploy(CONFIG, name="autoscaling", namespace="autoscaling", health_interval=0.5)
    try:
        transport = dep.endpoint("sms")
        messages = [{"content": f"m{i}", "from_addr": f"+2786{i:07d}", "to_addr": "100"} for i in range(MESSAGES)]
        injected = ray.get(transport.inject_many.remote(messages, wait=False), timeout=120)
        peak: dict[str, Any] = {}

        def grown() -> bool:
            replicas = dep.status()["endpoints"]["edge_app"]["replicas"]
            if len(replicas) > len(peak):
                peak.clear()
                peak.update(replicas)
            return len(replicas) >= 3

        wait_for(grown, 90, interval=0.25)

        def answered() -> set[str]:
            return {m["in_reply_to"] for m in ray.get(transport.sent.remote())}

        wait_for(lambda: answered() >= set(injected), 180, interval=0.25)
        wait_for(lambda: dep.replica_ids("edge_app") == ["0"], 90, interval=0.25)
        status = dep.status()
        return {
            "injected": injected,
            "answered": sorted(answered()),
            "peak_nodes": [r.get("node_id") for r in peak.values()],
            "replicas_after": dep.replica_ids("edge_app"),
            "autoscaling": status["endpoints"]["edge_app"]["autoscaling"],
            "failures": dep.failures(),
        }
    finally:
        dep.shutdown()


def run(cluster: Any, args: Any) -> dict[str, Any]:
    """Add the two extra nodes, run the deployment, report which nodes the replicas ran on."""
    node_a = cluster.add_node(num_cpus=1, resources={"edge": 2})
    node_b = cluster.add_node(num_cpus=1, resources={"edge": 2})
    cluster.wait_for_nodes()
    outcome = run_deployment(cluster.address)
    outcome["nodes"] = {"node_a": node_a.node_id, "node_b": node_b.node_id}
    return outcome


def main() -> int:
    """Start the cluster, run the deployment, print ``RESULT <json>``, shut everything down."""
    return cluster_script_main(__doc__, {"num_cpus": 1, "include_dashboard": False}, run)


if __name__ == "__main__":
    sys.exit(main())
