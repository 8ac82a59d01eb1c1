"""Change a running deployment's config: ``apply`` (with ``dry_run``), ``rollback``, ``history``.

``Deployment.apply(config)`` and ``ray-dispatch apply NEW.yaml`` come here:

1. the new config gets the full ``preflight`` (a bad one changes nothing);
2. the plan: ``plan_changes`` (router, middleware, stores, endpoints) and the
   routing difference on the deployment's recent traffic (every dispatcher's
   recent outcomes replayed through the running and the new config with
   ``ray_dispatch.tools.diff``, on in-memory stores); a dry run stops here;
3. every dispatcher prepares the new generation (builds and sets up the new
   router and middleware); if one cannot, all abort and nothing changed;
4. new application endpoints start (so that the new router has somewhere to
   deliver), then every dispatcher commits: it swaps routers between two
   batches (``actors.generation_switch``);
5. new transports start, changed endpoints are rescaled or replaced, removed
   ones are drained and stopped; the generation is recorded in the
   deployment's history (``actors.history``); the autoscaler follows the new
   ``autoscaling`` blocks.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray

from actors.history import find_history, start_history
from ray_dispatch.core.config import DispatcherConfig, FailureStoreSpec, StoreSpec, load_config
from ray_dispatch.core.errors import DispatchError, one_line
from ray_dispatch.core.generations import ApplyPlan, Generation, plan_changes
from ray_dispatch.preflight import ConfigSource, preflight
from ray_dispatch.tools.diff import ConfigDiff, diff

if TYPE_CHECKING:
    from ray_dispatch.api import Deployment

log = logging.getLogger(__name__)

DEFAULT_SAMPLE = 10_000
"""How many of the most recent messages (all dispatchers together) the routing difference replays."""


class ApplyRefused(DispatchError):
    """A dispatcher could not set up the new config, or a new endpoint could not start: nothing changed."""


@dataclass
class ApplyResult:
    """What ``apply`` did.

    Attributes:
        plan: the changes and the routing difference on recent traffic.
        applied: False for a dry run.
        generation: the generation now in force (the new one, once applied).
    """

    plan: ApplyPlan
    applied: bool
    generation: Generation | None = None

    def to_text(self, examples: int = 5) -> str:
        """The plan, then what happened."""
        text = self.plan.to_text(examples)
        if not self.applied:
            return f"{text}\n\ndry run: nothing changed (generation {self.plan.current} still in force)"
        assert self.generation is not None
        return (
            f"{text}\n\napplied: generation {self.generation.number} in force since {self.generation.applied_at_text}"
        )

    def __str__(self) -> str:
        return self.to_text()


def history_handle(deployment: Deployment, *, create: bool = True) -> Any:
    """The deployment's history actor; started with generation 1 (its running config) if it has none.

    A deployment started before generations existed has none: its running
    config becomes generation 1, dated when its first dispatcher switched to it.
    """
    handle = find_history(deployment.name, deployment.namespace)
    if handle is None and not create:
        return None
    if handle is None:
        handle = start_history(deployment.name, deployment.namespace, detached=True)
    if ray.get(handle.current.remote(), timeout=30) is None:
        info = _generation_infos(deployment)
        applied_at = min((i["applied_at"] for i in info), default=None)
        ray.get(
            handle.record.remote(
                deployment.config.raw, number=1, source=deployment.config.source, note="start", applied_at=applied_at
            ),
            timeout=30,
        )
    return handle


def record_start(name: str, namespace: str, config: DispatcherConfig, *, detached: bool) -> Any:
    """Start the history of a deployment about to start: ``config`` is generation 1; return its handle.

    Keep the handle as long as the deployment: like any actor that is not
    detached, the history actor goes when the last handle to it does.

    A history left by an earlier deployment of that name (one that was not
    shut down) is discarded first, so the new dispatchers do not adopt its generations.
    """
    stale = find_history(name, namespace)
    if stale is not None:
        ray.kill(stale)
        _wait_gone(name, namespace)
    handle = start_history(name, namespace, detached=detached)
    ray.get(handle.record.remote(config.raw, number=1, source=config.source, note="start"), timeout=60)
    return handle


def _wait_gone(name: str, namespace: str, bound: float = 30.0) -> None:
    """Wait (bounded) until the history actor's name is free again."""
    deadline = time.monotonic() + bound
    while find_history(name, namespace) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def history(deployment: Deployment) -> list[dict[str, Any]]:
    """The generations the deployment applied, oldest first (number, when, how, router)."""
    return ray.get(history_handle(deployment).summaries.remote(), timeout=30)  # type: ignore[no-any-return]


def routing_difference(
    deployment: Deployment, old: DispatcherConfig, new: DispatcherConfig, sample: int = DEFAULT_SAMPLE
) -> ConfigDiff:
    """Replay the deployment's recent traffic through ``old`` and ``new`` (in-memory stores); return the diff.

    The traffic is the last ``sample`` messages the dispatchers remember
    (``recent_outcomes``), oldest first, as they arrived.
    """
    records: list[dict[str, Any]] = []
    for handle in deployment.dispatchers:
        with contextlib.suppress(ray.exceptions.RayError):
            records += ray.get(handle.recent_records.remote(sample), timeout=60)
    records.sort(key=lambda r: r["seen_at"])
    traffic = [
        {"endpoint": r["endpoint"], "direction": r["direction"], "message": r["message"]}
        for r in records[-sample:]
        if isinstance(r["message"], dict)
    ]
    return diff(_in_memory(old, "running config"), _in_memory(new, new.source or "new config"), traffic, progress=False)


def _in_memory(config: DispatcherConfig, name: str) -> DispatcherConfig:
    """``config`` with in-memory stores (a replay must not touch the live ones), named ``name``."""
    return config.model_copy(update={"store": StoreSpec(), "failure_store": FailureStoreSpec(), "source": name})


def apply(
    deployment: Deployment,
    config: ConfigSource,
    *,
    dry_run: bool = False,
    allowed_class_prefixes: Sequence[str] | None = None,
    sample: int = DEFAULT_SAMPLE,
    note: str = "apply",
    timeout: float = 120.0,
) -> ApplyResult:
    """Check ``config``, plan, and (unless ``dry_run``) switch the running deployment to it.

    Raises:
        ConfigError: the new config is invalid, or changes ``dispatcher.replicas`` (nothing changed).
        ApplyRefused: a dispatcher could not set it up, or a new endpoint could not start
            (one line naming which and why; every dispatcher stays on the running generation).
    """
    new = preflight(config, allowed_class_prefixes)
    handle = history_handle(deployment)
    current: Generation = ray.get(handle.current.remote(), timeout=30)
    plan = plan_changes(load_config(deployment.config), new, current.number, current.number + 1)
    plan.routing = routing_difference(deployment, deployment.config, new, sample)
    if dry_run:
        return ApplyResult(plan, applied=False, generation=current)
    _prepare_everywhere(deployment, plan.generation, new, timeout)
    lifetime = deployment.detached
    # Replicas started from a driver that did not start the deployment (the CLI) must outlive it.
    deployment.detached = deployment.detached or not deployment._handles
    try:
        _start_applications(deployment, plan, new, current.number, timeout)
        _commit_everywhere(deployment, plan.generation, timeout)
        generation: Generation = ray.get(
            handle.record.remote(
                new.raw, number=plan.generation, source=new.source, note=note, applied_at=_applied_at(deployment)
            ),
            timeout=30,
        )
        _change_endpoints(deployment, plan, new, timeout)
        deployment._follow_autoscaling()
    finally:
        deployment.detached = lifetime
    return ApplyResult(plan, applied=True, generation=generation)


def _start_applications(
    deployment: Deployment, plan: ApplyPlan, new: DispatcherConfig, current: int, timeout: float
) -> None:
    """Start the new application endpoints (before the switch); if one cannot start, abort everywhere.

    Raises:
        ApplyRefused: an endpoint could not start (its replicas are stopped, every dispatcher aborted).
    """
    previous = deployment.config
    deployment.config = deployment.spec = new
    try:
        for endpoint, replicas in plan.endpoints_added.items():
            if replicas and not new.is_transport(endpoint):
                deployment._spawn(endpoint, new.endpoints[endpoint], replicas, timeout)
    except Exception as exc:
        _abort_everywhere(deployment, plan.generation)
        for endpoint in plan.endpoints_added:
            with contextlib.suppress(Exception):
                deployment.stop_endpoint(endpoint, timeout)
        deployment.config = deployment.spec = previous
        raise ApplyRefused(
            f"generation {plan.generation} not applied: endpoint could not start: {_reason(exc)};"
            f" every dispatcher stays on generation {current}"
        ) from None


def rollback(deployment: Deployment, **kw: Any) -> ApplyResult:
    """Apply the generation before the current one again (as a new generation).

    Raises:
        NoEarlierGeneration: the deployment has applied only one config.
        ApplyRefused: as for ``apply``.
    """
    target: Generation = deployment_get(history_handle(deployment).rollback_target.remote())
    config = load_config(target.config)
    config = config.model_copy(update={"source": target.source})
    return apply(deployment, config, note=f"rollback to {target.number}", **kw)


def deployment_get(ref: Any, timeout: float = 30) -> Any:
    """``ray.get`` raising an actor's error as itself (``ray_dispatch.api._get``)."""
    from ray_dispatch.api import _get

    return _get(ref, timeout=timeout)


def _reason(exc: BaseException) -> str:
    from ray_dispatch.api import original_error

    return one_line(original_error(exc))


def _prepare_everywhere(deployment: Deployment, generation: int, config: DispatcherConfig, timeout: float) -> None:
    """Phase one on every dispatcher; on any refusal, abort on all and raise ``ApplyRefused``."""
    refs = [d.prepare_generation.remote(generation, config.raw) for d in deployment.dispatchers]
    refused: list[str] = []
    for index, ref in enumerate(refs):
        try:
            ray.get(ref, timeout=timeout)
        except Exception as exc:
            refused.append(f"dispatcher {index}: {_reason(exc)}")
    if refused:
        _abort_everywhere(deployment, generation)
        raise ApplyRefused(
            f"generation {generation} not applied, every dispatcher stays on the running one: {'; '.join(refused)}"
        )


def _abort_everywhere(deployment: Deployment, generation: int) -> None:
    for handle in deployment.dispatchers:
        with contextlib.suppress(Exception):
            ray.get(handle.abort_generation.remote(generation), timeout=60)


def _commit_everywhere(deployment: Deployment, generation: int, timeout: float) -> None:
    """Phase two on every dispatcher (a dispatcher that died meanwhile adopts it when Ray restarts it)."""
    refs = [d.commit_generation.remote(generation) for d in deployment.dispatchers]
    for index, ref in enumerate(refs):
        try:
            ray.get(ref, timeout=timeout)
        except Exception as exc:
            log.warning("dispatcher %s did not commit generation %s: %s", index, generation, _reason(exc))


def _generation_infos(deployment: Deployment) -> list[dict[str, Any]]:
    infos = []
    for handle in deployment.dispatchers:
        with contextlib.suppress(Exception):
            infos.append(ray.get(handle.generation_status.remote(), timeout=30))
    return infos


def _applied_at(deployment: Deployment) -> float | None:
    """When the last dispatcher switched (None: none answered)."""
    return max((i["applied_at"] for i in _generation_infos(deployment)), default=None)


def _change_endpoints(deployment: Deployment, plan: ApplyPlan, new: DispatcherConfig, timeout: float) -> None:
    """Start new transports, rescale and replace changed endpoints, drain and stop removed ones."""
    for endpoint, replicas in plan.endpoints_added.items():
        if replicas and new.is_transport(endpoint):
            deployment._spawn(endpoint, new.endpoints[endpoint], replicas, timeout)
    for endpoint, (_, replicas) in plan.endpoints_rescaled.items():
        deployment.scale(endpoint, replicas, timeout)
    for endpoint in plan.endpoints_replaced:
        old_ids = deployment.replica_ids(endpoint)
        spec = new.endpoints[endpoint]
        if spec.replicas:
            deployment._spawn(endpoint, spec, spec.replicas, timeout)
        for replica_id in old_ids[::-1]:
            deployment._remove_replica(endpoint, replica_id, timeout)
    for endpoint in plan.endpoints_removed:
        deployment.stop_endpoint(endpoint, timeout)
    if plan.endpoints_removed:
        for handle in deployment.dispatchers:
            with contextlib.suppress(Exception):
                ray.get(handle.drop_endpoint_pools.remote(plan.endpoints_removed), timeout=timeout)
