"""Config generations of a running deployment, and the plan of an apply (no Ray).

Every config a deployment routes with is a numbered *generation*: the one it
started with is 1, each ``apply`` (and each rollback, which applies an earlier
config again) makes the next. ``GenerationHistory`` keeps them, newest last;
``plan_changes`` compares the running config with a new one and says what an
apply would change (router, middleware, stores, endpoints); the routing
difference on recent traffic is added to the plan by ``ray_dispatch.reconfigure``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ray_dispatch.core.config import DispatcherConfig, EndpointSpec
from ray_dispatch.core.errors import ConfigError, DispatchError

DEFAULT_KEEP = 50
"""How many generations a history keeps (the oldest are forgotten first; the current one always stays)."""

_ROUTER_BLOCKS = frozenset(
    {
        "router_class",
        "transport_names",
        "exposed_names",
        "middleware",
        "endpoints",
        "dispatcher",
        "store",
        "failure_store",
        "recent_outcomes",
    }
)
"""Top-level keys that are not the router's own config (compared separately)."""


class NoEarlierGeneration(DispatchError, LookupError):
    """``rollback`` was asked for, but the deployment has applied only one config."""


@dataclass(frozen=True)
class Generation:
    """One config a deployment routed (or routes) with.

    Attributes:
        number: 1 for the config it started with, then one more per apply.
        applied_at: when every dispatcher switched to it (seconds since the epoch).
        config: the config as given (``DispatcherConfig.raw``).
        source: the file it was read from, if any.
        note: how it came: ``start``, ``apply`` or ``rollback to N``.
    """

    number: int
    applied_at: float
    config: dict[str, Any]
    source: str | None = None
    note: str = "apply"

    @property
    def applied_at_text(self) -> str:
        """``applied_at`` as ISO 8601 UTC, to the second."""
        return datetime.fromtimestamp(self.applied_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    def summary(self) -> dict[str, Any]:
        """Number, when, how and which router; without the config itself."""
        return {
            "generation": self.number,
            "applied_at": self.applied_at_text,
            "note": self.note,
            "source": self.source,
            "router_class": self.config.get("router_class"),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (with the config)."""
        return asdict(self)


class GenerationHistory:
    """The generations a deployment applied, oldest first (see the module docstring).

    Args:
        keep: how many to remember (at least 2, so a rollback has somewhere to go).
        clock: wall-clock seconds (injectable for tests).
    """

    def __init__(self, keep: int = DEFAULT_KEEP, clock: Callable[[], float] = time.time) -> None:
        self.keep = max(2, keep)
        self._clock = clock
        self.entries: list[Generation] = []

    @property
    def current(self) -> Generation | None:
        """The generation the deployment routes with now (None before the first is recorded)."""
        return self.entries[-1] if self.entries else None

    @property
    def next_number(self) -> int:
        """The number the next recorded generation gets."""
        return self.entries[-1].number + 1 if self.entries else 1

    def record(
        self,
        config: Mapping[str, Any],
        *,
        number: int | None = None,
        source: str | None = None,
        note: str = "apply",
        applied_at: float | None = None,
    ) -> Generation:
        """Add the generation now in force; return it.

        Raises:
            ValueError: ``number`` is not above the current one's.
        """
        number = self.next_number if number is None else number
        if self.entries and number <= self.entries[-1].number:
            raise ValueError(f"generation {number} is not after the current one ({self.entries[-1].number})")
        entry = Generation(number, self._clock() if applied_at is None else applied_at, dict(config), source, note)
        self.entries.append(entry)
        del self.entries[: -self.keep]
        return entry

    def rollback_target(self) -> Generation:
        """The generation before the current one (what ``apply --rollback`` applies again).

        Raises:
            NoEarlierGeneration: there is none.
        """
        if len(self.entries) < 2:
            only = f" (only generation {self.entries[-1].number})" if self.entries else ""
            raise NoEarlierGeneration(f"there is no earlier generation to roll back to{only}")
        return self.entries[-2]

    def summaries(self) -> list[dict[str, Any]]:
        """``Generation.summary`` of each, oldest first."""
        return [entry.summary() for entry in self.entries]


@dataclass
class ApplyPlan:
    """What applying a new config to a running deployment changes.

    Attributes:
        generation: the number the new config gets; ``current``: the running one's.
        router: ``(old, new)`` router class when it changes.
        router_config_changed: the router's own keys (``route_mappings``, ``rules``...) differ.
        middleware_added, middleware_removed, middleware_changed: middleware names.
        stores_changed: ``store`` / ``failure_store`` when their block differs (routing state is not carried over).
        endpoints_added: new endpoint -> replicas to start.
        endpoints_removed: endpoints whose replicas are drained and stopped.
        endpoints_rescaled: endpoint -> (replicas now, replicas wanted).
        endpoints_replaced: endpoints whose ``class`` or ``config`` changed (replicas replaced one by one).
        not_live: changes that take effect only when the dispatchers restart, in words.
        routing: the routing difference on recent traffic (a ``ConfigDiff``), when computed.
    """

    generation: int
    current: int
    router: tuple[str, str] | None = None
    router_config_changed: bool = False
    middleware_added: list[str] = field(default_factory=list)
    middleware_removed: list[str] = field(default_factory=list)
    middleware_changed: list[str] = field(default_factory=list)
    stores_changed: list[str] = field(default_factory=list)
    endpoints_added: dict[str, int] = field(default_factory=dict)
    endpoints_removed: list[str] = field(default_factory=list)
    endpoints_rescaled: dict[str, tuple[int, int]] = field(default_factory=dict)
    endpoints_replaced: list[str] = field(default_factory=list)
    not_live: list[str] = field(default_factory=list)
    routing: Any = None

    @property
    def switches_router(self) -> bool:
        """Whether the dispatchers need the new router and middleware (anything but endpoint capacity changed)."""
        return bool(
            self.router
            or self.router_config_changed
            or self.middleware_added
            or self.middleware_removed
            or self.middleware_changed
            or self.stores_changed
            or self.endpoints_added
            or self.endpoints_removed
        )

    def lines(self) -> list[str]:
        """The plan in words, one change a line (the routing difference excluded)."""
        out = []
        if self.router:
            out.append(f"router: {self.router[0]} -> {self.router[1]}")
        elif self.router_config_changed:
            out.append("router config: changed")
        for label, names in (
            ("middleware added", self.middleware_added),
            ("middleware removed", self.middleware_removed),
            ("middleware changed", self.middleware_changed),
        ):
            if names:
                out.append(f"{label}: {', '.join(names)}")
        for store in self.stores_changed:
            out.append(f"{store}: changed (a new store: routing state is not carried over)")
        out += [f"endpoint added: {e} ({n} replica(s))" for e, n in self.endpoints_added.items()]
        out += [f"endpoint removed: {e} (drained, then stopped)" for e in self.endpoints_removed]
        out += [f"endpoint rescaled: {e} {a} -> {b} replica(s)" for e, (a, b) in self.endpoints_rescaled.items()]
        out += [f"endpoint replaced: {e} (class or config changed)" for e in self.endpoints_replaced]
        out += [f"not applied live: {text}" for text in self.not_live]
        return out or ["no changes"]

    def to_text(self, examples: int = 5) -> str:
        """The plan and the routing difference (totals, moves and up to ``examples`` changed messages)."""
        out = [f"plan: generation {self.current} -> {self.generation}"]
        out += [f"  {line}" for line in self.lines()]
        if self.routing is not None:
            out += ["", "routing difference on recent traffic:", self.routing.to_text(limit=examples)]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the plan."""
        return {
            "generation": self.generation,
            "current": self.current,
            "changes": self.lines(),
            "routing": None if self.routing is None else self.routing.to_dict(),
        }


def plan_changes(old: DispatcherConfig, new: DispatcherConfig, current: int, generation: int) -> ApplyPlan:
    """Compare the running config ``old`` (generation ``current``) with ``new``; return the plan.

    Raises:
        ConfigError: ``new`` changes what cannot change on a running deployment (``dispatcher.replicas``).
    """
    if new.dispatcher.replicas != old.dispatcher.replicas:
        raise ConfigError(
            f"dispatcher.replicas: cannot change on a running deployment ({old.dispatcher.replicas} ->"
            f" {new.dispatcher.replicas}); stop it and run the new config"
        )
    plan = ApplyPlan(generation=generation, current=current)
    if new.router_class != old.router_class:
        plan.router = (old.router_class, new.router_class)
    plan.router_config_changed = _router_keys(old) != _router_keys(new)
    old_mw = {m.name: (m, old.middleware_config(m.name)) for m in old.middleware}
    new_mw = {m.name: (m, new.middleware_config(m.name)) for m in new.middleware}
    plan.middleware_added = [n for n in new_mw if n not in old_mw]
    plan.middleware_removed = [n for n in old_mw if n not in new_mw]
    plan.middleware_changed = [n for n in new_mw if n in old_mw and new_mw[n] != old_mw[n]]
    if [m.name for m in old.middleware if m.name in new_mw] != [m.name for m in new.middleware if m.name in old_mw]:
        plan.middleware_changed = sorted(set(plan.middleware_changed) | (set(old_mw) & set(new_mw)))
    plan.stores_changed = [key for key in ("store", "failure_store") if _block(old, key) != _block(new, key)]
    for name, spec in new.endpoints.items():
        before = old.endpoints.get(name)
        if before is None:
            plan.endpoints_added[name] = spec.replicas if spec.class_path else 0
            continue
        if spec.class_path and (before.class_path, before.config) != (spec.class_path, spec.config):
            plan.endpoints_replaced.append(name)
        elif spec.class_path and spec.replicas != before.replicas:
            plan.endpoints_rescaled[name] = (before.replicas, spec.replicas)
        if _pool_settings(before) != _pool_settings(spec):
            plan.not_live.append(
                f"endpoints.{name}: policy, batching or rate_limit (in force when the dispatchers restart)"
            )
    plan.endpoints_removed = [name for name in old.endpoints if name not in new.endpoints]
    if new.dispatcher.model_dump() != old.dispatcher.model_dump():
        plan.not_live.append("dispatcher: actor_options or batching (in force when the dispatchers restart)")
    if new.recent_outcomes != old.recent_outcomes:
        plan.not_live.append("recent_outcomes (in force when the dispatchers restart)")
    return plan


def _router_keys(config: DispatcherConfig) -> dict[str, Any]:
    """The router's own part of a config: every top-level key that is not a dispatcher block."""
    middleware_names = {m.name for m in config.middleware}
    return {
        k: v
        for k, v in config.raw.items()
        if k not in _ROUTER_BLOCKS and k not in middleware_names and k not in ("return_route_ttl", "max_hops")
    } | {"return_route_ttl": config.return_route_ttl, "max_hops": config.max_hops}


def _block(config: DispatcherConfig, key: str) -> dict[str, Any]:
    spec = getattr(config, key)
    return {"class": spec.class_path, **(spec.__pydantic_extra__ or {})}


def _pool_settings(spec: EndpointSpec) -> tuple[Any, ...]:
    return (spec.policy, spec.batching, spec.rate_limit)
