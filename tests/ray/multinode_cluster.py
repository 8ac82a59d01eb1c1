"""Run a deployment on a three-node ``ray.cluster_utils.Cluster``; print what ran where as JSON.

Run by ``test_multinode.py`` in a subprocess (a process can hold only one Ray
connection, and the test session already has one). The last stdout line is
``RESULT <json>``. The cluster is always shut down, also when the run fails
or overruns ``--deadline`` seconds.

Nodes: the head (no custom resources), ``node_a`` with ``{"edge": 2}`` and
``node_b`` with ``{"edge": 2, "ingress": 1}``. The deployment asks for
``edge: 1`` per application replica (SPREAD), so its four replicas can only
be placed two per extra node, and pins the transport to ``ingress``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from tests.cluster_script import cluster_script_main

MESSAGES = 200

CONFIG: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["edge_app"],
    "route_mappings": {"sms": "edge_app"},
    "endpoints": {
        "sms": {
            "class": "actors.builtin.MemoryTransport",
            "actor_options": {"resources": {"ingress": 1}},
        },
        "edge_app": {
            "class": "actors.builtin.EchoApplication",
            "replicas": 4,
            "actor_options": {"resources": {"edge": 1}, "scheduling_strategy": "SPREAD"},
        },
    },
}


def run_deployment(address: str) -> dict[str, Any]:
    """Deploy CONFIG on the cluster at ``address``, push messages through it, report placement and counts."""
    import ray

    import ray_dispatch

    ray.init(address=address, namespace="multinode", log_to_driver=False)
    dep = ray_dispatch.deploy(CONFIG, name="multinode", namespace="multinode", health_interval=0.5)
    try:
        transport = dep.endpoint("sms")
        messages = [{"content": f"m{i}", "from_addr": f"+2786{i:07d}", "to_addr": "100"} for i in range(MESSAGES)]
        injected = ray.get(transport.inject_many.remote(messages), timeout=120)
        replies = ray.get(transport.wait_for_sent.remote(MESSAGES, 60), timeout=90)
        deadline = time.monotonic() + 30
        while True:  # acks travel back to the replica that sent each reply
            status = dep.status()
            acks = sum(
                r["counters"].get("event_received", 0) for r in status["endpoints"]["edge_app"]["replicas"].values()
            )
            if acks >= MESSAGES or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return {
            "injected": injected,
            "answered": [r["in_reply_to"] for r in replies],
            "status": status,
            "failures": dep.failures(),
        }
    finally:
        dep.shutdown()


def run(cluster: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Add the two extra nodes, run the deployment, report where everything ran."""
    node_a = cluster.add_node(num_cpus=1, resources={"edge": 2})
    node_b = cluster.add_node(num_cpus=1, resources={"edge": 2, "ingress": 1})
    cluster.wait_for_nodes()
    outcome = run_deployment(cluster.address)
    outcome["nodes"] = {"head": cluster.head_node.node_id, "node_a": node_a.node_id, "node_b": node_b.node_id}
    return outcome


def main() -> int:
    """Start the cluster, run the deployment, print ``RESULT <json>``, shut everything down."""
    return cluster_script_main(__doc__, {"num_cpus": 1, "include_dashboard": False}, run)


if __name__ == "__main__":
    sys.exit(main())
