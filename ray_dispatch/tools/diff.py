"""Diff two configs: replay the same traffic through both, report what routes differently.

::

    from ray_dispatch.tools import diff
    d = diff("old.yaml", "new.yaml", "traffic.jsonl")
    d.changed            # how many messages would go somewhere else
    d.transitions        # Counter({("inbound:app1", "inbound:app2"): 30, ...})
    d.changes[0]         # message id, old and new destinations, both traces

A message is routed differently when the set of destinations it is
delivered to differs, or when it fails or is dropped on one side only.
Failing on both sides for different reasons is not a change of route.
Each side keeps its own routing state (return routes, user groups, round
robins), as two real dispatchers would.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ray_dispatch.core.config import load_config
from ray_dispatch.core.dispatcher import Dispatcher, DispatchOutcome
from ray_dispatch.core.message import clone_json
from ray_dispatch.core.stores.failures import Direction, MemoryFailureStore

from ._render import html_table, text_table
from ._sync import run_sync
from .explain import ConfigSource, Explanation, Step
from .progress import progress_bar_for
from .replay import DiscardOutbox
from .traffic import Arrival, Traffic, TrafficReader, prevalidate, traffic_name


def route_of(outcome: DispatchOutcome) -> tuple[str, ...]:
    """Where a message went, comparable across configs.

    Sorted ``"direction:endpoint"`` destinations, plus ``"(failed)"`` when any
    copy failed and ``"(dropped)"`` when it was dropped on purpose.
    """
    route = sorted(f"{d.direction}:{d.endpoint}" for d in outcome.deliveries)
    if outcome.failures:
        route.append("(failed)")
    if outcome.dropped is not None:
        route.append("(dropped)")
    return tuple(route)


def route_text(route: tuple[str, ...]) -> str:
    """A route as one short string (``"nowhere"`` when empty)."""
    return ", ".join(route) or "nowhere"


@dataclass
class RouteChange:
    """One message that the two configs route differently.

    Attributes:
        line: its line in the traffic.
        message_id: its ``message_id`` (``event_id`` for events), if any.
        direction: ``inbound``, ``event`` or ``outbound``.
        endpoint: the endpoint it arrived on.
        old: where the old config sent it (see ``route_of``).
        new: where the new config sends it.
        old_steps: why, on the old side (its explanation steps).
        new_steps: why, on the new side.
    """

    line: int
    message_id: str | None
    direction: Direction
    endpoint: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    old_steps: list[Step]
    new_steps: list[Step]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the change."""
        return {
            "line": self.line,
            "message_id": self.message_id,
            "direction": self.direction,
            "endpoint": self.endpoint,
            "old": list(self.old),
            "new": list(self.new),
            "old_steps": [{"kind": s.kind, "text": s.text} for s in self.old_steps],
            "new_steps": [{"kind": s.kind, "text": s.text} for s in self.new_steps],
        }

    def to_text(self) -> str:
        """The change with both traces, indented."""
        head = f"line {self.line}: {self.direction} {self.message_id or '(no id)'} on {self.endpoint!r}"
        out = [head, f"  old: {route_text(self.old)}"]
        out += [f"       {s.kind}: {s.text}" for s in self.old_steps]
        out.append(f"  new: {route_text(self.new)}")
        out += [f"       {s.kind}: {s.text}" for s in self.new_steps]
        return "\n".join(out)


@dataclass
class ConfigDiff:
    """How two configs route the same traffic differently.

    Attributes:
        old_config, new_config: the configs' files (or ``<dict>``).
        traffic: the traffic file (or ``<N items>``).
        messages: messages compared (bad lines are not messages).
        bad_lines: lines that could not be read as traffic (the same on both sides).
        changed: messages routed differently.
        transitions: per (old route, new route) text pair, how many messages moved.
        changes: the first ``max_changes`` changed messages, with both traces.
        seconds: wall time.
    """

    old_config: str
    new_config: str
    traffic: str
    messages: int = 0
    bad_lines: int = 0
    changed: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    changes: list[RouteChange] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def unchanged(self) -> int:
        """Messages routed the same way by both configs."""
        return self.messages - self.changed

    @property
    def equivalent(self) -> bool:
        """Whether both configs routed every message the same way."""
        return self.changed == 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the diff."""
        return {
            "old_config": self.old_config,
            "new_config": self.new_config,
            "traffic": self.traffic,
            "messages": self.messages,
            "bad_lines": self.bad_lines,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "transitions": [{"old": o, "new": n, "count": c} for (o, n), c in self.transitions.most_common()],
            "changes": [c.to_dict() for c in self.changes],
            "seconds": round(self.seconds, 6),
        }

    def to_text(self, limit: int | None = 20) -> str:
        """Totals, the moves grouped by (old, new) route, then up to ``limit`` changes with traces."""
        out = [
            f"{self.messages:,} messages of {self.traffic}: {self.changed:,} routed differently,"
            f" {self.unchanged:,} the same ({self.old_config} -> {self.new_config})"
        ]
        if self.bad_lines:
            out.append(f"{self.bad_lines:,} bad lines skipped (not readable as traffic)")
        if self.transitions:
            rows = [(n, old, new) for (old, new), n in self.transitions.most_common()]
            out += ["", text_table(("count", "old route", "new route"), rows)]
        shown = self.changes if limit is None else self.changes[:limit]
        if shown:
            out += ["", f"changed messages (first {len(shown)} of {self.changed:,}):"]
            out += [change.to_text() for change in shown]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"<ConfigDiff {self.messages:,} messages: {self.changed:,} routed differently>"

    def _repr_html_(self) -> str:
        caption = (
            f"{self.messages:,} messages: {self.changed:,} routed differently, {self.unchanged:,} the same"
            f" ({self.old_config} → {self.new_config})"
        )
        moves = html_table(
            ("count", "old route", "new route"),
            [(n, old, new) for (old, new), n in self.transitions.most_common()],
            caption=caption,
        )
        rows = [
            (
                c.line,
                c.message_id or "",
                route_text(c.old),
                route_text(c.new),
                " | ".join(s.text for s in c.old_steps if s.kind != "receive"),
                " | ".join(s.text for s in c.new_steps if s.kind != "receive"),
            )
            for c in self.changes[:50]
        ]
        details = html_table(("line", "message id", "old", "new", "old: why", "new: why"), rows) if rows else ""
        return moves + details


async def diff_async(
    old_config: ConfigSource,
    new_config: ConfigSource,
    traffic: Traffic,
    *,
    max_changes: int = 1000,
    progress: bool | None = None,
) -> ConfigDiff:
    """Like ``diff``, for use inside a running event loop (``await diff_async(...)``)."""
    old_loaded, new_loaded = load_config(old_config), load_config(new_config)
    old_side = Dispatcher(old_loaded, DiscardOutbox(), failures=MemoryFailureStore(max_records=100))
    new_side = Dispatcher(new_loaded, DiscardOutbox(), failures=MemoryFailureStore(max_records=100))
    reader = TrafficReader(old_loaded)
    result = ConfigDiff(old_loaded.source or "<dict>", new_loaded.source or "<dict>", traffic_name(traffic))
    bar, by_bytes = progress_bar_for(progress, traffic, result.traffic)
    lines = 0
    started = time.perf_counter()
    await old_side.start()
    try:
        await new_side.start()
        try:
            for item in reader.read(traffic):
                lines += 1
                if bar is not None and not lines & 255:
                    bar.update(reader.bytes_read if by_bytes else lines, lines)
                if type(item) is not Arrival:
                    result.bad_lines += 1
                    continue
                await _compare(old_side, new_side, item, result, max_changes)
        finally:
            await new_side.stop()
    finally:
        await old_side.stop()
        result.seconds = time.perf_counter() - started
        if bar is not None:
            bar.update(reader.bytes_read if by_bytes else lines, lines)
            bar.close()
    return result


def diff(
    old_config: ConfigSource,
    new_config: ConfigSource,
    traffic: Traffic,
    *,
    max_changes: int = 1000,
    progress: bool | None = None,
) -> ConfigDiff:
    """Replay ``traffic`` through two configs and report the messages routed differently.

    Args:
        old_config, new_config: dicts, YAML paths or ``DispatcherConfig`` s.
        traffic: a JSON Lines file or an iterable of lines, dicts or messages
            (see ``ray_dispatch.tools.traffic``).
        max_changes: changed messages kept with their traces (all are counted).
        progress: draw a progress bar on stderr (default: when stderr is a terminal).

    Raises:
        ConfigError: either config is invalid.
        OSError: the traffic file cannot be opened.
    """
    return run_sync(diff_async(old_config, new_config, traffic, max_changes=max_changes, progress=progress))


async def _compare(old_side: Dispatcher, new_side: Dispatcher, item: Arrival, result: ConfigDiff, limit: int) -> None:
    twin = Arrival(item.line, item.direction, item.endpoint, clone_json(item.payload))
    old_payload, new_payload = prevalidate(item), prevalidate(twin)
    old_out = await old_side.dispatch(item.direction, old_payload, item.endpoint, trace=True)
    new_out = await new_side.dispatch(item.direction, new_payload, item.endpoint, trace=True)
    result.messages += 1
    old_route, new_route = route_of(old_out), route_of(new_out)
    if old_route == new_route:
        return
    result.changed += 1
    result.transitions[route_text(old_route), route_text(new_route)] += 1
    if len(result.changes) < limit:
        result.changes.append(
            RouteChange(
                line=item.line,
                message_id=_message_id(item.direction, old_payload),
                direction=item.direction,
                endpoint=old_out.endpoint,
                old=old_route,
                new=new_route,
                old_steps=Explanation.from_outcome(old_out, old_payload).steps[1:],
                new_steps=Explanation.from_outcome(new_out, new_payload).steps[1:],
            )
        )


def _message_id(direction: Direction, payload: Any) -> str | None:
    value = payload.get("event_id" if direction == "event" else "message_id")
    return value if isinstance(value, str) else None
