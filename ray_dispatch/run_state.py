"""Which deployments ``ray-dispatch run`` started on this machine: one small JSON file each.

``run`` writes ``<namespace>.<name>.json`` (the Ray address it used, its pid,
whether it detached, whether that Ray wants an auth token) once the deployment
is up; the other commands read it to find the deployment without joining any
other Ray cluster; a foreground ``run`` removes it when it exits, ``stop`` when
it stops the deployment. The directory is ``$RAY_DISPATCH_STATE_DIR``, else
``$XDG_RUNTIME_DIR/ray_dispatch``, else ``~/.ray_dispatch``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_DIR_ENV = "RAY_DISPATCH_STATE_DIR"


@dataclass(frozen=True)
class RunRecord:
    """What ``ray-dispatch run`` left behind for one deployment."""

    name: str
    namespace: str
    address: str
    pid: int
    detached: bool
    token_auth: bool

    def owner_alive(self) -> bool:
        """Whether the ``run`` process that wrote this record still runs."""
        return pid_alive(self.pid)

    def running_here(self) -> bool:
        """Whether a foreground ``run`` on this machine still owns the deployment (its pid is alive)."""
        return not self.detached and self.owner_alive()


def state_dir() -> Path:
    """The directory holding the records (see the module docstring)."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "ray_dispatch"
    return Path.home() / ".ray_dispatch"


def record_path(name: str, namespace: str) -> Path:
    """The file of deployment ``name`` in ``namespace`` (characters unsafe in a file name replaced)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{namespace}.{name}")
    return state_dir() / f"{safe}.json"


def read_record(name: str, namespace: str) -> RunRecord | None:
    """The record of ``name`` in ``namespace``, or None (no file, or one that is not a record)."""
    try:
        data = json.loads(record_path(name, namespace).read_text(encoding="utf-8"))
        return RunRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_record(record: RunRecord) -> Path:
    """Write ``record`` (atomically: readers see the old file or the new one); return its path."""
    path = record_path(record.name, record.namespace)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(record)), encoding="utf-8")
    temporary.replace(path)
    return path


def remove_record(name: str, namespace: str, *, pid: int | None = None) -> None:
    """Remove the record of ``name`` (only if ``pid`` wrote it, when given)."""
    record = read_record(name, namespace)
    if record is None or (pid is not None and record.pid != pid):
        return
    with contextlib.suppress(OSError):
        record_path(name, namespace).unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
