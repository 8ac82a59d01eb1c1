"""Explain by message id: what a running dispatcher did with a recent message, and why.

A dispatcher keeps a ``RecentOutcomes`` ring of the last N messages it
routed (the ``recent_outcomes`` config key, default 10,000; 0 turns it off).
Recording costs a dict insertion per message: the ring keeps references to
the message and to the ``DispatchOutcome`` the core returned anyway, and
builds the readable ``RecordedOutcome`` (destinations, failure reasons,
drop) only when someone asks.

Tracing every message would cost far more, so the full trace is made on
request: ``explain_recorded`` runs the recorded message again through a
harness built from the dispatcher's own config, traced. The harness reads
the live routing store through a ``ShadowStore`` (it never writes to it), so
return routes and user groups are looked up as they are *now*; a router
that keeps state can decide differently than it did at the time, and the
result says so, next to what actually happened::

    live = await explain_recorded(config, recent.get("msg-1"), live_store=store)
    print(live)            # what happened, the re-run's steps, whether they agree

None of this imports Ray; ``DispatcherActor.explain_message`` and
``Deployment.explain`` use it on Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray_dispatch.core.config import DispatcherConfig
from ray_dispatch.core.harness import RouterHarness
from ray_dispatch.core.recent import (
    CONFIG_KEY,
    DEFAULT_RECENT_OUTCOMES,
    RecentOutcomes,
    RecordedOutcome,
    ShadowStore,
    Step,
    _iso,
    arrived_copy,
    message_id_of,
)
from ray_dispatch.core.stores.routing import MemoryStore, RoutingStore

from ._render import html_table, text_table
from .explain import Explanation, describe_message


@dataclass
class LiveExplanation:
    """Explain-by-id: what a running dispatcher did with a message, and a traced re-run of it.

    Attributes:
        recorded: what actually happened (from the dispatcher's ring of recent outcomes).
        rerun: the message run again through a harness built from the dispatcher's config.
        agrees: whether the re-run routed it as the dispatcher did (``RecordedOutcome.route``).
        state_reads: routing-store keys the re-run read from the live store.
        notes: caveats, in words (state-dependent decisions, delivery failures the harness cannot see).
        deployment: the deployment's name, if known.
        dispatcher: the dispatcher replica that routed it, if known.
    """

    recorded: RecordedOutcome
    rerun: Explanation
    agrees: bool
    state_reads: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    deployment: str | None = None
    dispatcher: int | None = None

    @property
    def where(self) -> str:
        """``deployment 'x' (dispatcher 0)``, or ``the dispatcher``."""
        if self.deployment is None:
            return "the dispatcher"
        index = f" (dispatcher {self.dispatcher})" if self.dispatcher is not None else ""
        return f"deployment {self.deployment!r}{index}"

    def to_text(self) -> str:
        """Both sides as text: what happened, the live trace if any, the re-run's steps, the verdict."""
        rec = self.recorded
        out = [
            describe_message(rec.message)
            if rec.direction == "event"
            else f"{rec.direction} {describe_message(rec.message)}",
            f"arrived on {rec.endpoint!r} at {_iso(rec.seen_at)}, routed by {self.where}",
            f"what happened: {rec.result}",
        ]
        if rec.trace is not None:
            out += ["", "trace recorded live:", _steps_table(rec.trace)]
        out += ["", "re-run now with the dispatcher's config:", _steps_table(self.rerun.steps)]
        out.append(f"re-run result: {self.rerun.result}")
        out += ["", self.verdict]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    @property
    def verdict(self) -> str:
        """One line: whether the re-run agrees with what happened."""
        if self.agrees:
            return "the re-run routes it as the dispatcher did."
        return (
            f"the re-run routes it DIFFERENTLY: live {_route_text(self.recorded.route)},"
            f" re-run {_route_text(_rerun_route(self.rerun))}."
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: ``recorded``, ``rerun``, ``agrees``, ``verdict``, ``notes``..."""
        return {
            "deployment": self.deployment,
            "dispatcher": self.dispatcher,
            "message_id": self.recorded.message_id,
            "recorded": self.recorded.to_dict(),
            "rerun": self.rerun.to_dict(),
            "agrees": self.agrees,
            "verdict": self.verdict,
            "state_reads": list(self.state_reads),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"<LiveExplanation {self.recorded.message_id}: {self.recorded.result}; agrees={self.agrees}>"

    def _repr_html_(self) -> str:
        rec = self.recorded
        rows: list[tuple[object, ...]] = [
            ("live", "arrived", f"{rec.direction} on {rec.endpoint!r} at {_iso(rec.seen_at)}")
        ]
        rows += [("live", s.kind, s.text) for s in rec.trace or []]
        rows.append(("live", "result", rec.result))
        rows += [("re-run", s.kind, s.text) for s in self.rerun.steps]
        rows.append(("re-run", "result", self.rerun.result))
        rows += [("", "note", n) for n in self.notes]
        caption = f"{describe_message(rec.message)} — {self.verdict}"
        return html_table(("side", "step", "what happened"), rows, caption=caption)


async def explain_recorded(
    config: DispatcherConfig | Mapping[str, Any],
    recorded: RecordedOutcome,
    *,
    live_store: RoutingStore | None = None,
    deployment: str | None = None,
    dispatcher: int | None = None,
) -> LiveExplanation:
    """Run a recorded message again, traced, through a harness built from ``config``; compare.

    Args:
        config: the dispatcher's config (the same one it routes with).
        recorded: what the dispatcher did (``RecentOutcomes.get``).
        live_store: the dispatcher's routing store, read (never written) by the
            re-run; None runs it against an empty in-memory store.
        deployment, dispatcher: shown in the result.

    Raises:
        ConfigError: the config is invalid (it is not, if a dispatcher runs with it).
    """
    shadow = ShadowStore(live_store if live_store is not None else MemoryStore())
    payload = arrived_copy(recorded.message)
    async with RouterHarness(config, store=shadow) as harness:
        outcome = await harness.dispatcher.dispatch(recorded.direction, payload, recorded.endpoint, trace=True)
    rerun = Explanation.from_outcome(outcome, payload)
    agrees = _rerun_route(rerun) == recorded.route
    return LiveExplanation(
        recorded=recorded,
        rerun=rerun,
        agrees=agrees,
        state_reads=list(shadow.live_reads),
        notes=_notes(recorded, rerun, shadow.live_reads, agrees, live_store is not None),
        deployment=deployment,
        dispatcher=dispatcher,
    )


def _notes(recorded: RecordedOutcome, rerun: Explanation, reads: list[str], agrees: bool, live: bool) -> list[str]:
    notes = [
        "the re-run is a fresh harness with this dispatcher's config; it delivers nothing and"
        + (" reads the live routing store without writing to it." if live else " starts with an empty routing store.")
    ]
    if reads:
        shown = ", ".join(repr(k) for k in reads[:3]) + (", ..." if len(reads) > 3 else "")
        notes.append(
            f"the re-run read {len(reads)} routing-store key(s) as they are now ({shown}); a router that keeps"
            " state (user groups, round robins, return routes) may have decided differently when the message"
            " was routed."
        )
    elif not agrees:
        notes.append(
            "routers that keep state (user groups, round robins, return routes) decide from the store as it is"
            " now, and the config's middleware runs again: either can explain the difference."
        )
    if any(f["stage"] == "deliver" for f in recorded.failures):
        notes.append("delivery failures happen after routing and cannot show in the re-run.")
    return notes


def _rerun_route(rerun: Explanation) -> tuple[str, ...]:
    route = sorted(rerun.destinations)
    if rerun.failures:
        route.append("(failed)")
    if rerun.dropped is not None:
        route.append("(dropped)")
    return tuple(route)


def _route_text(route: tuple[str, ...]) -> str:
    return ", ".join(route) or "nowhere"


def _steps_table(steps: list[Step]) -> str:
    return text_table(("#", "step", "what happened"), [(i, s.kind, s.text) for i, s in enumerate(steps, 1)])


__all__ = [
    "CONFIG_KEY",
    "DEFAULT_RECENT_OUTCOMES",
    "LiveExplanation",
    "RecentOutcomes",
    "RecordedOutcome",
    "ShadowStore",
    "arrived_copy",
    "explain_recorded",
    "message_id_of",
]
