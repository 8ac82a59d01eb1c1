"""Make ``tests.helpers_apps`` (test actor classes) importable by the driver and by Ray's workers.

Ray workers import an actor class by its module path. They run with the
driver's working directory on ``sys.path``, which is not enough when pytest is
started elsewhere, so the repository root goes on the driver's ``sys.path``
and on ``PYTHONPATH``, which the local Ray the session starts (after this
file is imported) passes on to every worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = str(Path(__file__).resolve().parents[2])

if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
if REPO_ROOT not in _paths:
    os.environ["PYTHONPATH"] = os.pathsep.join([REPO_ROOT, *_paths])
