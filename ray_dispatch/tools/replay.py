"""Replay recorded traffic through a config, fast, and summarise where it went.

::

    from ray_dispatch.tools import replay
    summary = replay("examples/multi_country.yaml", "examples/traffic_multi_country.jsonl")
    summary.delivered          # Counter({"inbound:weather_app": 120, ...})
    summary.failures           # Counter({"no route_mappings entry ...": 3})

Messages go through the same ``Dispatcher`` core as in ``RouterHarness``
(middleware, router, return routes), but delivered messages are counted, not
kept, so files of millions of lines replay in constant memory.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ray_dispatch.core.config import load_config
from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.message import Message
from ray_dispatch.core.receipts import CONFIRMED, Receipt
from ray_dispatch.core.stores.failures import Direction, MemoryFailureStore

from ._render import html_table, text_table
from ._sync import run_sync
from .explain import ConfigSource
from .progress import progress_bar_for
from .traffic import Arrival, Traffic, TrafficReader, prevalidate, traffic_name

BAD_LINE_PREFIX = "bad line: "
"""Failure reasons of lines that could not be read as traffic start with this."""


class DiscardOutbox:
    """An ``Outbox`` that takes every message and keeps none (the dispatcher's stats count them when settled)."""

    async def deliver(self, direction: Direction, endpoint: str, message: Message) -> Receipt:
        """Accept ``message`` and forget it; return the ``CONFIRMED`` receipt."""
        return CONFIRMED


@dataclass
class ReplaySummary:
    """Where replayed traffic went.

    Attributes:
        traffic: the traffic file (or ``<N items>``).
        config: the config file (or ``<dict>``).
        lines: traffic lines read (blank lines not counted).
        messages: lines handed to the dispatcher (``lines`` minus bad lines).
        received: messages received per source, as ``"direction:endpoint"``.
        delivered: copies delivered per destination, as ``"direction:endpoint"``.
        failures: failure count per reason (bad lines: ``"bad line: <why>"``).
        failure_lines: per reason, the first ``max_lines_per_reason`` line numbers.
        failed: lines that failed: bad lines, and messages with at least one failure record.
        dropped: messages (or copies) dropped on purpose, per reason.
        seconds: wall time of the replay.
    """

    traffic: str
    config: str
    lines: int = 0
    messages: int = 0
    received: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    failure_lines: dict[str, list[int]] = field(default_factory=dict)
    failed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    max_lines_per_reason: int = 20

    @property
    def bad_lines(self) -> int:
        """Lines that could not be read as traffic at all."""
        return self.lines - self.messages

    @property
    def total_delivered(self) -> int:
        """Copies delivered, all destinations together."""
        return sum(self.delivered.values())

    @property
    def total_failures(self) -> int:
        """Failure records (and bad lines), all reasons together."""
        return sum(self.failures.values())

    @property
    def rate(self) -> float:
        """Lines replayed per second."""
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    @property
    def endpoint_counts(self) -> dict[str, int]:
        """Messages that crossed each endpoint's link, either way (for ``draw(counts=...)``)."""
        counts: Counter[str] = Counter()
        for key, n in (self.received + self.delivered).items():
            counts[key.partition(":")[2]] += n
        return dict(counts)

    def add_failure(self, reason: str, line: int) -> None:
        """Count one failure for ``reason`` at ``line``."""
        self.failures[reason] += 1
        lines = self.failure_lines.setdefault(reason, [])
        if len(lines) < self.max_lines_per_reason:
            lines.append(line)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the summary."""
        return {
            "traffic": self.traffic,
            "config": self.config,
            "lines": self.lines,
            "messages": self.messages,
            "bad_lines": self.bad_lines,
            "received": dict(sorted(self.received.items())),
            "delivered": dict(sorted(self.delivered.items())),
            "failures": [
                {"reason": reason, "count": n, "lines": self.failure_lines.get(reason, [])}
                for reason, n in self.failures.most_common()
            ],
            "failed": self.failed,
            "dropped": dict(self.dropped.most_common()),
            "seconds": round(self.seconds, 6),
            "rate": round(self.rate, 1),
        }

    def to_text(self) -> str:
        """The summary as text: totals, then destinations, failures and drops."""
        out = [
            f"replayed {self.lines:,} lines of {self.traffic} through {self.config}"
            f" in {self.seconds:.2f}s ({self.rate:,.0f} lines/s)",
            f"delivered {self.total_delivered:,} copies; {self.failed:,} lines failed;"
            f" {sum(self.dropped.values()):,} dropped on purpose",
        ]
        if self.delivered:
            out += ["", "delivered to:", text_table(("destination", "messages"), sorted(self.delivered.items()))]
        if self.failures:
            rows = [(n, reason, _lines(self.failure_lines.get(reason, []), n)) for reason, n in self._failure_rows()]
            out += ["", "failures:", text_table(("count", "reason", "lines"), rows)]
        if self.dropped:
            out += ["", "dropped:", text_table(("count", "reason"), [(n, r) for r, n in self.dropped.most_common()])]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return (
            f"<ReplaySummary {self.lines:,} lines: {self.total_delivered:,} delivered,"
            f" {self.failed:,} failed, {sum(self.dropped.values()):,} dropped>"
        )

    def _repr_html_(self) -> str:
        rows: list[tuple[object, ...]] = [("delivered", dest, n, "") for dest, n in sorted(self.delivered.items())]
        rows += [
            ("failed", reason, n, _lines(self.failure_lines.get(reason, []), n)) for reason, n in self._failure_rows()
        ]
        rows += [("dropped", reason, n, "") for reason, n in self.dropped.most_common()]
        caption = (
            f"{self.lines:,} lines of {self.traffic} through {self.config}: {self.total_delivered:,} delivered,"
            f" {self.failed:,} failed ({self.rate:,.0f} lines/s)"
        )
        return html_table(("outcome", "destination or reason", "count", "lines"), rows, caption=caption)

    def _failure_rows(self) -> list[tuple[str, int]]:
        return self.failures.most_common()


async def replay_async(
    config: ConfigSource,
    traffic: Traffic,
    *,
    progress: bool | None = None,
    max_lines_per_reason: int = 20,
) -> ReplaySummary:
    """Like ``replay``, for use inside a running event loop (``await replay_async(...)``)."""
    loaded = load_config(config)
    dispatcher = Dispatcher(loaded, DiscardOutbox(), failures=MemoryFailureStore(max_records=100))
    reader = TrafficReader(loaded)
    summary = ReplaySummary(
        traffic=traffic_name(traffic), config=loaded.source or "<dict>", max_lines_per_reason=max_lines_per_reason
    )
    bar, by_bytes = progress_bar_for(progress, traffic, summary.traffic)
    dispatch = dispatcher.dispatch
    lines = messages = failed = 0
    await dispatcher.start()
    started = time.perf_counter()
    try:
        for item in reader.read(traffic):
            lines += 1
            if bar is not None and not lines & 1023:
                bar.update(reader.bytes_read if by_bytes else lines, lines)
            if type(item) is not Arrival:
                line, reason = item  # type: ignore[misc]
                summary.add_failure(BAD_LINE_PREFIX + reason, line)
                failed += 1
                continue
            messages += 1
            outcome = await dispatch(item.direction, prevalidate(item), item.endpoint)
            if outcome.failures:
                failed += 1
                for failure in outcome.failures:
                    summary.add_failure(failure.reason, item.line)
    finally:
        summary.seconds = time.perf_counter() - started
        await dispatcher.stop()
        if bar is not None:
            bar.update(reader.bytes_read if by_bytes else lines, lines)
            bar.close()
    stats = dispatcher.stats
    summary.lines, summary.messages, summary.failed = lines, messages, failed
    summary.received.update({f"{d}:{e}": n for (d, e), n in stats.received.items()})
    summary.delivered.update({f"{d}:{e}": n for (d, e), n in stats.published.items()})
    summary.dropped.update(stats.dropped)
    return summary


def replay(
    config: ConfigSource,
    traffic: Traffic,
    *,
    progress: bool | None = None,
    max_lines_per_reason: int = 20,
) -> ReplaySummary:
    """Replay ``traffic`` through ``config`` and count where every message went.

    Args:
        config: a dict, a YAML path or a ``DispatcherConfig``.
        traffic: a JSON Lines file (see ``ray_dispatch.tools.traffic``
            for the line format) or an iterable of lines, dicts or messages.
        progress: draw a progress bar on stderr (default: when stderr is a terminal).
        max_lines_per_reason: line numbers kept per failure reason (all are counted).

    Bad lines and unroutable messages never stop the replay: each is a
    counted failure with its line number. Works inside Jupyter too.

    Raises:
        ConfigError: the config is invalid.
        OSError: the traffic file cannot be opened.
    """
    return run_sync(replay_async(config, traffic, progress=progress, max_lines_per_reason=max_lines_per_reason))


def _lines(lines: list[int], count: int) -> str:
    shown = ", ".join(str(n) for n in lines)
    return shown + (", …" if count > len(lines) else "")
