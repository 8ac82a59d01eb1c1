"""A tiny progress bar for long replays (stderr, redrawn in place, no dependency)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from .traffic import Traffic, traffic_size


class ProgressBar:
    """Shows how far a replay got: percent (when the total is known), count and rate.

    Call ``update(done, items)`` as often as you like; it redraws at most every
    ``interval`` seconds. ``close()`` draws the final state and ends the line.

    Args:
        label: shown before the bar (e.g. the traffic file name).
        total: the amount ``done`` reaches at the end (bytes or lines), or None if unknown.
        unit: what ``items`` counts, shown with the rate.
        stream: where to draw (default ``sys.stderr``).
        interval: seconds between redraws.
    """

    WIDTH = 24

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        unit: str = "msg",
        stream: TextIO | None = None,
        interval: float = 0.2,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._done = 0
        self._items = 0
        self._width = 0

    def update(self, done: int, items: int) -> None:
        """Record progress (``done`` towards ``total``; ``items`` processed) and maybe redraw."""
        self._done, self._items = done, items
        now = time.perf_counter()
        if now - self._last_draw >= self.interval:
            self._last_draw = now
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and move to a new line."""
        self._draw(time.perf_counter())
        self.stream.write("\n")
        self.stream.flush()

    def render(self, now: float | None = None) -> str:
        """Return the bar's current text (without the leading carriage return)."""
        elapsed = max((now if now is not None else time.perf_counter()) - self._start, 1e-9)
        rate = self._items / elapsed
        counts = f"{self._items:,} {self.unit} {rate:,.0f} {self.unit}/s"
        if not self.total:
            return f"{self.label} {counts}"
        fraction = min(self._done / self.total, 1.0)
        filled = round(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        return f"{self.label} [{bar}] {fraction:4.0%} {counts}"

    def _draw(self, now: float) -> None:
        text = self.render(now)
        self.stream.write("\r" + text.ljust(self._width))  # pad to erase a longer previous line
        self._width = len(text)
        self.stream.flush()


def progress_bar_for(progress: bool | None, traffic: Traffic, label: str) -> tuple[ProgressBar | None, bool]:
    """Return a bar for reading ``traffic`` (None when ``progress`` is off) and whether it counts bytes.

    ``progress=None`` means: draw one when stderr is a terminal. A file's
    progress is measured in bytes read; an iterable's in items, if it has a length.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None, False
    total, unit = traffic_size(traffic)
    name = Path(label).name if isinstance(traffic, (str, Path)) else label
    return ProgressBar(name, total, unit="lines"), unit == "bytes"
