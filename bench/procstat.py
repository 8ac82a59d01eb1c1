"""CPU time of the benchmark's actor processes, from ``/proc/<pid>/stat`` (Linux; psutil elsewhere).

``CpuMeter`` reads user + system time of each process (all its threads)
when entered and when left; ``per_message`` turns the difference into
microseconds of CPU per message for each role (transport, dispatcher,
application), summed over that role's processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
"""Kernel clock ticks per second: the unit of ``utime`` and ``stime`` in ``/proc/<pid>/stat``."""
HAVE_PROC = Path("/proc/self/stat").exists()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (every thread).

    Raises:
        OSError: there is no such process (or it cannot be read).
    """
    if HAVE_PROC:
        # Fields after the command name (which may hold spaces and parentheses): state is
        # field 3, utime field 14 and stime field 15 (proc(5)).
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


class CpuMeter:
    """CPU seconds each role's processes used between entering and leaving the ``with`` block.

    Args:
        pids: role name -> process ids of that role (e.g. ``{"dispatcher": [4242]}``).
    """

    def __init__(self, pids: Mapping[str, list[int]]) -> None:
        self.pids = {role: list(ids) for role, ids in pids.items()}
        self._start: dict[int, float] = {}
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = {pid: cpu_seconds(pid) for ids in self.pids.values() for pid in ids}
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = {
            role: sum(cpu_seconds(pid) - self._start[pid] for pid in ids) for role, ids in self.pids.items()
        }

    def per_message(self, messages: int) -> dict[str, float]:
        """Microseconds of CPU per message for each role, and their ``total``.

        Raises:
            ValueError: ``messages`` is not positive, or the meter has not been left yet.
        """
        if messages <= 0:
            raise ValueError(f"messages must be positive (got {messages!r})")
        if not self.seconds and self.pids:
            raise ValueError("the meter has not measured anything yet (use it as a with block)")
        result = {role: round(seconds / messages * 1e6, 2) for role, seconds in self.seconds.items()}
        result["total"] = round(sum(self.seconds.values()) / messages * 1e6, 2)
        return result
