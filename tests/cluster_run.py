"""Run a script that starts its own ``ray.cluster_utils.Cluster``, isolated from the test session's Ray.

A process holds one Ray connection and the session's is taken, so multi-node
tests run their cluster in a subprocess: with its own Ray temp dir (its
``ray_current_cluster`` file must not redirect anyone else's ``ray.init``),
in its own process group so an overrun kills all of it, and with a deadline.
The script prints its result as one ``RESULT <json>`` line.
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

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cluster_script(script: Path, deadline: int, *args: str) -> dict[str, Any]:
    """Run ``script --deadline DEADLINE ARGS...`` and return its ``RESULT`` JSON; fail the test otherwise."""
    temp_dir = tempfile.mkdtemp(prefix="rdc.")  # short: Ray's socket paths must stay under ~107 bytes
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = temp_dir
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))  # tests.cluster_script
    proc = subprocess.Popen(
        [sys.executable, str(script), "--deadline", str(deadline), *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=deadline + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{script.name} did not finish in {deadline + 60}s; stderr tail:\n{err[-3000:]}")
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    results = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, f"exit {proc.returncode}; stderr tail:\n{err[-3000:]}"
    return json.loads(results[-1].removeprefix("RESULT "))  # type: ignore[no-any-return]
