"""The script side of ``tests/cluster_run.py``: start a ``ray.cluster_utils.Cluster``, run, report.

A script calls ``cluster_script_main`` from its ``main``. It parses
``--deadline`` (and the script's own options), raises ``Overrun`` if the run
outlives it, always shuts the cluster and Ray down, and prints the run's
outcome as the last stdout line, ``RESULT <json>``. ``run_cluster_script``
puts the repository on ``PYTHONPATH`` so scripts can import this module;
by hand, run them from the repository root with ``PYTHONPATH=.``.
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Callable
from typing import Any


class Overrun(Exception):
    """The run took longer than its deadline."""


def _overrun(*_: Any) -> None:
    raise Overrun("the cluster run overran its deadline")


def cluster_script_main(
    description: str | None,
    head_node_args: dict[str, Any],
    run: Callable[[Any, argparse.Namespace], dict[str, Any]],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse the options, start the cluster's head, ``run(cluster, args)``, shut down, print ``RESULT <json>``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--deadline", type=int, default=240, help="seconds before giving up")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _overrun)
    signal.alarm(args.deadline)

    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=head_node_args)
    try:
        outcome = run(cluster, args)
    finally:
        signal.alarm(0)
        ray.shutdown()
        cluster.shutdown()
    print("RESULT " + json.dumps(outcome, default=str), flush=True)
    return 0
