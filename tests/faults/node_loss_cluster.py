"""Remove a worker node of a ``ray.cluster_utils.Cluster`` mid-stream; print what was sent and what arrived as JSON.

Run by ``test_node_loss.py`` in a subprocess (a process holds one Ray
connection and the test session already has one). The last stdout line is
``RESULT <json>``. The cluster is always shut down, also when the run fails
or overruns ``--deadline`` seconds.

Layout (placement is forced by custom resources, so it is deterministic):

- head ``{"head": 100}``: the driver, the dispatcher, the transport and the
  ``Ledger`` (all asking for ``head: 1``);
- ``victim`` ``{"edge": 1}``: application replica 0, started with the deployment;
- ``spare`` ``{"edge": 2}``, added after the deployment: application replica 1
  (``scale``), with room for replica 0 to be restarted there.

The application replicas ask for ``edge: 1`` and keep the default
``max_restarts: -1``. Mid-stream the victim node is removed without a
graceful shutdown (its raylet and workers are killed), so replica 0 dies with
the batches it had not confirmed; the dispatcher redelivers them to replica
1, or to replica 0 once Ray restarted it on the spare node.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tests.cluster_script import cluster_script_main
from tests.waiting import wait_for

LEDGER = "ledger-node-loss"
NAMESPACE = "node_loss"
USERS = 200
ON_HEAD = {"resources": {"head": 1}}

CONFIG: dict[str, Any] = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
    "dispatcher": {"actor_options": ON_HEAD},
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport", "config": {"auto_ack": False}, "actor_options": ON_HEAD},
        "app": {
            "class": "actors.testing.LedgerApplication",
            "replicas": 1,
            "policy": "sticky",
            "actor_options": {"resources": {"edge": 1}},
            "batching": {"max_batch": 100, "backoff": 0.1, "backoff_max": 1.0},
            "config": {"ledger": LEDGER, "namespace": NAMESPACE, "delay": 0.05},
        },
    },
}


def _placement(dep: Any) -> dict[str, str]:
    """Replica id -> node id of the application replicas that answer now."""
    import ray

    found = {}
    for rid in dep.replica_ids("app"):
        try:
            found[rid] = ray.get(dep.endpoint("app", rid).ping.remote(), timeout=20)["node_id"]
        except Exception as exc:  # a replica still restarting
            found[rid] = f"unavailable: {type(exc).__name__}"
    return found


def run(cluster: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Deploy, add the spare node and replica 1, stream ``args.messages``, remove the victim node mid-stream."""
    import ray

    from actors.testing import Ledger
    from ray_dispatch.api import Deployment

    messages = args.messages

    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    victim = cluster.add_node(num_cpus=1, resources={"edge": 1})
    cluster.wait_for_nodes()
    ledger: Any = ray.remote(Ledger).options(name=LEDGER, **ON_HEAD).remote()
    dep = Deployment.start(CONFIG, name="node-loss", namespace=NAMESPACE, health_interval=0.5)
    try:
        spare = cluster.add_node(num_cpus=1, resources={"edge": 2})
        cluster.wait_for_nodes()
        dep.scale("app", 2)
        before = _placement(dep)
        sms = dep.endpoint("sms")
        batch = [{"content": str(i), "from_addr": f"+2788{i % USERS:05d}", "to_addr": "1"} for i in range(messages)]
        started = time.monotonic()
        sending = sms.inject_many.remote(batch)
        if not wait_for(lambda: len(ray.get(ledger.ids.remote(), timeout=20)) > messages // 4, 120):
            raise RuntimeError("traffic did not start")
        at_removal = len(ray.get(ledger.ids.remote(), timeout=20))
        removed_wall = time.time()
        cluster.remove_node(victim, allow_graceful=False)
        removed_at = time.monotonic()
        sent_ids = ray.get(sending, timeout=200)
        finished = time.monotonic()
        received = ray.get(ledger.ids.remote(), timeout=30)
        wait_for(lambda: not any(n.startswith("unavailable") for n in _placement(dep).values()), 30)
        status = ray.get(dep.dispatchers[0].status.remote(), timeout=30)
        lost = sorted(set(sent_ids) - set(received))
        return {
            "nodes": {"head": cluster.head_node.node_id, "victim": victim.node_id, "spare": spare.node_id},
            "before": before,
            "after": _placement(dep),
            "sent": len(sent_ids),
            "distinct_sent": len(set(sent_ids)),
            "received": len(received),
            "lost": len(lost),
            "lost_sample": lost[:5],
            "at_removal": at_removal,
            "per_replica": ray.get(ledger.replicas.remote(), timeout=30),
            "failures": dep.failures(),
            "dead_replicas": status["dead_replicas"],
            "seconds_to_finish_after_removal": round(finished - removed_at, 2),
            "longest_pause_after_removal": round(ray.get(ledger.longest_pause.remote(removed_wall), timeout=30), 2),
            "longest_user_pause_after_removal": round(
                ray.get(ledger.longest_pause.remote(removed_wall, per_user=True), timeout=30), 2
            ),
            "seconds_total": round(finished - started, 2),
            "app_senders": status["endpoints"]["app"],
        }
    finally:
        dep.shutdown(timeout=10)
        ray.kill(ledger)


def shipped_health_checks() -> dict[str, Any]:
    """The node health-check settings ``cluster.yaml`` gives the head's ``ray start --system-config``."""
    import shlex
    from pathlib import Path

    import yaml

    cluster = yaml.safe_load((Path(__file__).resolve().parents[2] / "cluster.yaml").read_text())
    for command in cluster["head_start_ray_commands"]:
        for word in shlex.split(command):
            if word.startswith("--system-config="):
                return json.loads(word.removeprefix("--system-config="))  # type: ignore[no-any-return]
    raise LookupError("cluster.yaml: no --system-config on the head's ray start")


def main() -> int:
    """Start the cluster, run, print ``RESULT <json>``, shut everything down."""
    shipped = "--ray-default-health-checks" not in sys.argv
    return cluster_script_main(
        __doc__,
        {
            "num_cpus": 1,
            "resources": {"head": 100},
            "include_dashboard": False,
            "_system_config": shipped_health_checks() if shipped else {},
        },
        run,
        _add_arguments,
    )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=5_000, help="messages to stream")
    parser.add_argument(
        "--ray-default-health-checks",
        action="store_true",
        help="keep Ray's node health-check settings (default: the ones cluster.yaml ships)",
    )


if __name__ == "__main__":
    sys.exit(main())
