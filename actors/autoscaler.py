"""The autoscaler actor: one per deployment, it grows and shrinks endpoints with an ``autoscaling:`` block.

Why a separate actor and not dispatcher replica 0: with several dispatcher
replicas exactly one must decide, and a dispatcher restart must not lose the
decision maker. A named actor per deployment gives both: Ray keeps the name
unique, and the actor restarts on its own (``max_restarts: -1``) with its
state rebuilt from the config and the replicas running (the only state it
keeps is how long the load has asked for a change, see
``ray_dispatch.core.autoscaling``).

Each look (every ``interval_s``), it asks every dispatcher for the messages
sent to each endpoint and not yet confirmed, sums them, and lets the
endpoint's ``AutoscalePolicy`` decide. Scaling goes through the ``Scaler`` it
was given (the deployment's own ``scale``), so growing starts replicas like
``dep.scale`` does and shrinking drains a replica before stopping it: nothing
is lost. While a dispatcher does not answer, nothing is scaled (a wrong load
figure must not shrink an endpoint).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import ray

from actors.naming import autoscaler_actor_name, find_dispatchers
from ray_dispatch.core.autoscaling import AutoscalePolicy, AutoscalingSpec, ScalingDecision
from ray_dispatch.core.errors import one_line

log = logging.getLogger(__name__)

PENDING_TIMEOUT = 10.0  # seconds a dispatcher has to say how much is pending


class Scaler(Protocol):
    """What the autoscaler needs from a deployment: its replicas and a way to change their number."""

    def replica_ids(self, endpoint: str) -> list[str]:
        """Replica ids of ``endpoint`` now running."""

    def scale(self, endpoint: str, replicas: int) -> list[str]:
        """Grow or shrink ``endpoint`` to ``replicas`` (draining removed ones); return the ids."""

    def refresh_config(self) -> object:
        """Reload the config in force (after an apply), so new endpoints can be scaled."""


class AutoscalerActor:
    """Scales a deployment's autoscaled endpoints from their pending messages (see the module docstring).

    It looks at the load from a thread started by the constructor, so a restarted
    autoscaler carries on by itself.

    Args:
        deployment: the deployment's name (to find its dispatchers).
        namespace: its Ray namespace.
        endpoints: each autoscaled endpoint's ``autoscaling`` block, as dicts.
        connect: returns the ``Scaler`` to act through; called once, in this actor.
        autostart: look at the load every ``interval_s`` from now on (False: only when ``look`` is called).
    """

    def __init__(
        self,
        deployment: str,
        namespace: str,
        endpoints: dict[str, dict[str, Any]],
        connect: Callable[[], Scaler],
        autostart: bool = True,
    ) -> None:
        self.deployment = deployment
        self.namespace = namespace
        self.policies = {
            name: AutoscalePolicy(name, AutoscalingSpec.model_validate(spec)) for name, spec in endpoints.items()
        }
        self._connect = connect
        self._scaler: Scaler | None = None
        self._replicas: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._last: dict[str, ScalingDecision] = {}
        self._error: str | None = None
        self._lock = threading.Lock()  # one look at a time (the thread's and a caller's)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        if autostart:
            self._thread = threading.Thread(target=self._loop, name="autoscaler", daemon=True)
            self._thread.start()

    def configure(self, endpoints: dict[str, dict[str, Any]]) -> None:
        """Follow the ``autoscaling`` blocks of a config applied since (``ray-dispatch apply``).

        An endpoint whose block is unchanged keeps its timers; a changed one
        starts afresh; one without a block any more is left at its count.
        """
        with self._lock:
            policies = {}
            for name, raw in endpoints.items():
                spec = AutoscalingSpec.model_validate(raw)
                kept = self.policies.get(name)
                policies[name] = kept if kept is not None and kept.spec == spec else AutoscalePolicy(name, spec)
            self.policies = policies
            for gone in set(self._replicas) - set(policies):
                self._replicas.pop(gone, None)
                self._pending.pop(gone, None)
                self._last.pop(gone, None)
            if self._scaler is not None:
                self._scaler.refresh_config()

    def stop(self) -> None:
        """Stop scaling (the deployment is shutting down); waits for a scaling step under way."""
        self._stopping.set()
        with self._lock:
            pass

    def state(self) -> dict[str, Any]:
        """Per autoscaled endpoint: current and target replicas, bounds, pending, the last decision."""
        out: dict[str, Any] = {}
        for name, policy in self.policies.items():
            spec = policy.spec
            pending = self._pending.get(name)
            last = self._last.get(name)
            out[name] = {
                "current": self._replicas.get(name),
                "target": spec.wanted(pending) if pending is not None else None,
                "min_replicas": spec.min_replicas,
                "max_replicas": spec.max_replicas,
                "target_pending_per_replica": spec.target_pending_per_replica,
                "pending": pending,
                "last_decision": last.to_dict() if last else None,
                "error": self._error,
            }
        return out

    def look(self) -> list[dict[str, Any]]:
        """Look at the load once now and scale where a policy says so; return the decisions carried out."""
        with self._lock:
            if self._stopping.is_set():
                return []
            if self._scaler is None:
                self._scaler = self._connect()
            return self._look(self._scaler)

    def _look(self, scaler: Scaler) -> list[dict[str, Any]]:
        pending = self._pending_per_endpoint()
        done = []
        for name, policy in self.policies.items():
            replicas = len(scaler.replica_ids(name))
            self._replicas[name] = replicas
            if pending is None:
                continue
            self._pending[name] = pending.get(name, 0)
            decision = policy.observe(time.time(), replicas, self._pending[name])
            if decision is None:
                continue
            log.info("autoscaling %s: %d -> %d replicas (%s)", name, decision.current, decision.target, decision.reason)
            self._last[name] = decision  # before acting: status shows why replicas are coming or going
            self._replicas[name] = len(scaler.scale(name, decision.target))
            done.append(decision.to_dict())
        return done

    def _pending_per_endpoint(self) -> dict[str, int] | None:
        """Unconfirmed messages per endpoint summed over every dispatcher; None when one does not answer."""
        dispatchers = find_dispatchers(self.deployment, self.namespace)
        if not dispatchers:
            self._error = "no dispatcher runs"
            return None
        try:
            answers = ray.get([d.pending.remote() for d in dispatchers], timeout=PENDING_TIMEOUT)
        except Exception as exc:  # a dispatcher restarting: decide nothing this time
            self._error = f"a dispatcher did not say what is pending: {one_line(exc)}"
            return None
        self._error = None
        total: dict[str, int] = {}
        for answer in answers:
            for name, count in answer.items():
                total[name] = total.get(name, 0) + count
        return total

    def _interval(self) -> float:
        return min((policy.spec.interval_s for policy in self.policies.values()), default=1.0)

    def _loop(self) -> None:
        while not self._stopping.wait(self._interval()):
            try:
                self.look()
            except Exception as exc:  # keep scaling later; say why now
                self._error = one_line(exc)
                log.warning("autoscaling: %s", self._error)


def start_autoscaler(
    deployment: str,
    namespace: str,
    endpoints: dict[str, dict[str, Any]],
    connect: Callable[[], Scaler],
    *,
    detached: bool,
) -> Any:
    """Start the deployment's autoscaler actor (it begins looking at once); return its handle."""
    lifetime = {"lifetime": "detached"} if detached else {}
    remote: Any = ray.remote(AutoscalerActor)
    handle = remote.options(
        name=autoscaler_actor_name(deployment), namespace=namespace, num_cpus=0, max_restarts=-1, **lifetime
    ).remote(deployment, namespace, endpoints, connect)
    ray.get(handle.state.remote())  # started (an error in the constructor is raised here)
    return handle


def find_autoscaler(deployment: str, namespace: str) -> Any | None:
    """The deployment's autoscaler actor, or None when it has none."""
    try:
        return ray.get_actor(autoscaler_actor_name(deployment), namespace=namespace)
    except ValueError:
        return None
