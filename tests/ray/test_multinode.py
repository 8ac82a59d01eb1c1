"""A deployment on a three-node cluster: replicas placed by resources and SPREAD, messages flowing.

A process holds one Ray connection and the session's is taken, so the
cluster runs in a subprocess (``multinode_cluster.py``) with its own Ray temp
dir (its ``ray_current_cluster`` file must not redirect anyone else's
``ray.init``), in its own process group so an overrun kills all of it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("multinode_cluster.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 240


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    temp_dir = tempfile.mkdtemp(prefix="rdmn.")  # short: Ray's socket paths must stay under ~107 bytes
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = temp_dir
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--deadline", str(DEADLINE)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=DEADLINE + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"multi-node run did not finish in {DEADLINE + 60}s; stderr tail:\n{err[-3000:]}")
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    results = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, f"exit {proc.returncode}; stderr tail:\n{err[-3000:]}"
    return json.loads(results[-1].removeprefix("RESULT "))  # type: ignore[no-any-return]


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
