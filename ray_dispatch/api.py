"""The Python API: start, attach to, scale and stop a deployment on Ray.

A *deployment* is one or more ``DispatcherActor`` plus the endpoint actors its
config describes, all named actors (``<name>:<endpoint>:<replica>``) in one
Ray namespace, so another driver can attach to it by name::

    import ray_dispatch
    dep = ray_dispatch.deploy("examples/seed.yaml")        # starts a local Ray if none runs
    dep.send("smpp_transport", "hello", from_addr="+27831234567")
    dep.status()
    dep.shutdown()

Everything here is synchronous (it waits on Ray), so it reads naturally in a
notebook and a script.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray

from actors.autoscaler import find_autoscaler, start_autoscaler
from actors.dispatcher import DispatcherActor
from actors.endpoint import EndpointActor
from actors.history import find_history
from actors.naming import console_actor_name, dispatcher_actor_name, dispatcher_names, endpoint_actor_name, replica_ids
from ray_dispatch import reconfigure
from ray_dispatch.core.batching import RAY_SYSTEM_CONFIG
from ray_dispatch.core.config import (
    DEFAULT_ACTOR_OPTIONS,
    DispatcherConfig,
    EndpointSpec,
    check_endpoint_config,
    load_config,
)
from ray_dispatch.core.errors import ConfigError, DispatchError, InvalidMessage, one_line
from ray_dispatch.preflight import ROLE_BASES, endpoint_class, preflight
from ray_dispatch.tools.draw import Topology, draw
from ray_dispatch.tools.recent import LiveExplanation

DEFAULT_NAMESPACE = "ray_dispatch"
DEFAULT_NAME = "default"


class DeploymentNotFound(DispatchError, LookupError):
    """No running deployment has that name in that namespace."""


def ensure_ray(address: str | None = None, namespace: str = DEFAULT_NAMESPACE, *, quiet: bool = False) -> None:
    """Connect to Ray: ``address`` (or ``$RAY_ADDRESS``), else start a local one (dashboard off).

    A local Ray starts with ``core.batching.RAY_SYSTEM_CONFIG`` (batch blobs up
    to 1 MiB travel inline with the call). Does nothing when this process is
    already connected. ``quiet`` keeps Ray's own startup lines off the terminal.
    """
    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS")
    level = logging.ERROR if quiet else logging.INFO
    if target:
        ray.init(address=target, namespace=namespace, log_to_driver=False, logging_level=level)
    else:
        ray.init(
            address="local",
            namespace=namespace,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=level,
            _system_config=dict(RAY_SYSTEM_CONFIG),
        )


class Deployment:
    """A running dispatcher deployment (see the module docstring).

    Build one with ``deploy`` (start) or ``attach`` (find a running one).
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        config: DispatcherConfig,
        dispatchers: list[Any],
        *,
        detached: bool = False,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.config = config
        self.spec: DispatcherConfig = config  # its ``dispatcher`` and ``endpoints`` sections (older name)
        self.dispatchers = dispatchers
        self.detached = detached
        # Handles of the replicas this driver started. ``ray.get_actor`` handles are
        # weak (they do not keep an actor alive), so without these a replica the
        # dispatcher lets go of could be collected by Ray before it was stopped.
        self._handles: dict[tuple[str, str], Any] = {}
        # The autoscaler this driver started (kept for the same reason as ``_handles``).
        self._autoscaler: Any = None
        # What ``spawn`` started per endpoint, so ``scale`` grows it alike.
        self._spawned: dict[str, EndpointSpec] = {}
        self._history: Any = None  # the history actor this driver started (kept alive by this handle)

    # -- construction -----------------------------------------------------------------

    @classmethod
    def start(
        cls,
        config: Mapping[str, Any] | str | Path | DispatcherConfig,
        *,
        name: str = DEFAULT_NAME,
        namespace: str = DEFAULT_NAMESPACE,
        detached: bool = False,
        address: str | None = None,
        allowed_class_prefixes: Sequence[str] | None = None,
        health_interval: float = 2.0,
        timeout: float = 120.0,
    ) -> Deployment:
        """Start the dispatcher(s) and every endpoint the config describes.

        The config is checked first (``preflight``, without Ray), so a bad one
        starts nothing. An error an actor raises while starting is raised here
        as itself (the original exception type and message).

        Raises:
            ConfigError: the config is invalid (the same line ``ray-dispatch validate`` prints).
            DispatchError: a deployment with this name already runs.
        """
        return cls.start_checked(
            preflight(config, allowed_class_prefixes),
            name=name,
            namespace=namespace,
            detached=detached,
            address=address,
            allowed_class_prefixes=allowed_class_prefixes,
            health_interval=health_interval,
            timeout=timeout,
        )

    @classmethod
    def start_checked(
        cls,
        loaded: DispatcherConfig,
        *,
        name: str = DEFAULT_NAME,
        namespace: str = DEFAULT_NAMESPACE,
        detached: bool = False,
        address: str | None = None,
        allowed_class_prefixes: Sequence[str] | None = None,
        health_interval: float = 2.0,
        timeout: float = 120.0,
    ) -> Deployment:
        """``start`` for a config that ``preflight`` returned (with the same ``allowed_class_prefixes``).

        For callers that check the config themselves before connecting to Ray
        (``ray-dispatch run``), so that it is not checked twice.

        Raises:
            DispatchError: a deployment with this name already runs.
        """
        ensure_ray(address, namespace)
        if dispatcher_names(name, namespace):
            raise DispatchError(f"a deployment named {name!r} already runs in namespace {namespace!r}")
        lifetime = {"lifetime": "detached"} if detached else {}
        history = reconfigure.record_start(name, namespace, loaded, detached=detached)  # its config is generation 1
        remote: Any = ray.remote(DispatcherActor)
        dispatchers = [
            remote.options(
                name=dispatcher_actor_name(name, i), namespace=namespace, **lifetime, **loaded.dispatcher.options()
            ).remote(  # type: ignore[attr-defined]
                loaded.raw,
                name,
                i,
                allowed_class_prefixes=allowed_class_prefixes,
                health_interval=health_interval,
            )
            for i in range(loaded.dispatcher.replicas)
        ]
        deployment = cls(name, namespace, loaded, dispatchers, detached=detached)
        deployment._history = history
        try:
            _get([d.start.remote() for d in dispatchers], timeout=timeout)
            for endpoint, endpoint_spec in loaded.endpoints.items():
                if endpoint_spec.class_path and endpoint_spec.replicas:
                    deployment._spawn(endpoint, endpoint_spec, endpoint_spec.replicas, timeout)
            deployment._start_autoscaler()
        except BaseException:
            deployment.shutdown(timeout=5)
            raise
        return deployment

    @classmethod
    def attach(
        cls, name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE, *, address: str | None = "auto"
    ) -> Deployment:
        """Find a running deployment by name (from any driver connected to its cluster).

        Raises:
            DeploymentNotFound: no deployment of that name runs there.
        """
        ensure_ray(address, namespace)
        found = dispatcher_names(name, namespace)
        if not found:
            raise DeploymentNotFound(f"no deployment named {name!r} runs in namespace {namespace!r}")
        dispatchers: list[Any] = [ray.get_actor(n, namespace=namespace) for n in found]
        raw: dict[str, Any] = ray.get(dispatchers[0].raw_config.remote())
        return cls(name, namespace, load_config(raw), dispatchers, detached=_is_detached(dispatchers[0]))

    def _start_autoscaler(self) -> None:
        """Start the autoscaler actor when an endpoint has an ``autoscaling:`` block (see ``actors.autoscaler``)."""
        scaled = self._autoscaled()
        if scaled:
            connect = functools.partial(_attach_in_cluster, self.name, self.namespace)
            self._autoscaler = start_autoscaler(self.name, self.namespace, scaled, connect, detached=self.detached)

    def _follow_autoscaling(self) -> None:
        """After an apply: the autoscaler follows the config in force (started when it first has autoscaling)."""
        autoscaler = find_autoscaler(self.name, self.namespace)
        if autoscaler is None:
            self._start_autoscaler()
        else:
            ray.get(autoscaler.configure.remote(self._autoscaled()), timeout=60)

    def _autoscaled(self) -> dict[str, dict[str, Any]]:
        """Each endpoint with an ``autoscaling:`` block, and the block as a dict."""
        return {name: spec.autoscaling.model_dump() for name, spec in self.config.endpoints.items() if spec.autoscaling}

    # -- endpoints ----------------------------------------------------------------------

    def spawn(
        self,
        endpoint: str,
        actor_class: type[EndpointActor] | str,
        replicas: int = 1,
        *,
        config: Mapping[str, Any] | None = None,
        actor_options: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> list[str]:
        """Start ``replicas`` more actors of ``actor_class`` serving ``endpoint``; return their replica ids.

        Raises:
            ConfigError: unknown endpoint, wrong class, or invalid endpoint config.
        """
        self._check_endpoint(endpoint)
        path = actor_class if isinstance(actor_class, str) else f"{actor_class.__module__}.{actor_class.__qualname__}"
        base = self.spec.endpoints[endpoint]
        spec = EndpointSpec.model_validate(
            {
                "class": path,
                "replicas": replicas,
                "policy": base.policy,
                "batching": base.batching,
                "actor_options": dict(actor_options or base.actor_options),
                "config": dict(config if config is not None else base.config),
            }
        )
        cls = actor_class if isinstance(actor_class, type) else None
        ids = self._spawn(endpoint, spec, replicas, timeout, cls)
        self._spawned[endpoint] = spec
        return ids

    def _spawn(
        self, endpoint: str, spec: EndpointSpec, count: int, timeout: float, cls: type | None = None
    ) -> list[str]:
        if cls is None:
            cls = endpoint_class(self.config, endpoint, spec)
            if cls is None:
                raise ConfigError(f"endpoints.{endpoint}.class: not configured; use spawn() with a class")
        else:
            base = ROLE_BASES[self.config.role(endpoint)]
            if not issubclass(cls, base):
                raise ConfigError(f"endpoint {endpoint!r} needs a {base.__name__} subclass")
            check_endpoint_config(endpoint, cls, spec.config)
        existing = self.replica_ids(endpoint)
        start = max((int(r) for r in existing if r.isdigit()), default=-1) + 1
        ids = [str(start + i) for i in range(count)]
        lifetime = {"lifetime": "detached"} if self.detached else {}
        remote: Any = ray.remote(cls)
        handles: list[Any] = [
            remote.options(  # type: ignore[attr-defined]
                name=endpoint_actor_name(self.name, endpoint, rid),
                namespace=self.namespace,
                **lifetime,
                **spec.options(),
            ).remote(
                endpoint,
                spec.config,
                replica_id=rid,
                sender=self.config.dispatcher.batching.model_dump(),
                deployment=self.name,
                namespace=self.namespace,
            )
            for rid in ids
        ]
        try:
            _get([h.start.remote() for h in handles], timeout=timeout)
        except Exception:
            for handle in handles:
                ray.kill(handle)
            raise
        self._handles.update({(endpoint, rid): h for rid, h in zip(ids, handles)})
        ray.get(
            [d.add_replica.remote(endpoint, rid, h) for d in self.dispatchers for rid, h in zip(ids, handles)],
            timeout=timeout,
        )
        return ids

    def replica_ids(self, endpoint: str) -> list[str]:
        """Replica ids of ``endpoint`` now running (by actor name), sorted."""
        return replica_ids(self.name, endpoint, self.namespace)

    def endpoint(self, endpoint: str, replica: str | int = 0) -> Any:
        """The actor handle of one replica of ``endpoint`` (e.g. a MemoryTransport to inject into).

        Raises:
            ConfigError: unknown endpoint.
            DeploymentNotFound: no such replica runs.
        """
        self._check_endpoint(endpoint)
        own = self._handles.get((endpoint, str(replica)))
        if own is not None:
            return own
        try:
            return ray.get_actor(endpoint_actor_name(self.name, endpoint, str(replica)), namespace=self.namespace)
        except ValueError:
            raise DeploymentNotFound(f"endpoint {endpoint!r} has no running replica {replica!r}") from None

    def scale(self, endpoint: str, replicas: int, timeout: float = 60.0) -> list[str]:
        """Grow or shrink ``endpoint`` to ``replicas`` actors without losing messages; return the ids.

        Shrinking removes the newest replicas after they confirmed what they were sent.

        Raises:
            ConfigError: unknown endpoint, or growing one with no ``class`` configured.
        """
        self._check_endpoint(endpoint)
        current = self.replica_ids(endpoint)
        if replicas > len(current):
            spec = self._spawned.get(endpoint) or self.spec.endpoints[endpoint]
            if not spec.class_path and current:
                info = ray.get(self.endpoint(endpoint, current[0]).ping.remote())
                spec = spec.model_copy(update={"class_path": info["class"]})
            if not spec.class_path:
                raise ConfigError(f"endpoints.{endpoint}.class: not configured; use spawn() with a class")
            self._spawn(endpoint, spec, replicas - len(current), timeout)
        for rid in current[replicas:][::-1] if replicas < len(current) else []:
            self._remove_replica(endpoint, rid, timeout)
        return self.replica_ids(endpoint)

    def stop_endpoint(self, endpoint: str, timeout: float = 60.0) -> None:
        """Stop every replica of ``endpoint`` (after they confirmed what they were sent)."""
        for rid in self.replica_ids(endpoint):
            self._remove_replica(endpoint, rid, timeout)

    def _remove_replica(self, endpoint: str, replica_id: str, timeout: float) -> None:
        # By name, not via ``endpoint()``: an apply removes endpoints its new config no longer has.
        handle = self._handles.get((endpoint, replica_id)) or ray.get_actor(
            endpoint_actor_name(self.name, endpoint, replica_id), namespace=self.namespace
        )
        ray.get([d.remove_replica.remote(endpoint, replica_id, timeout) for d in self.dispatchers], timeout=timeout + 5)
        try:
            ray.get(handle.stop.remote(), timeout=timeout)
        finally:
            ray.kill(handle)
            self._handles.pop((endpoint, replica_id), None)

    def _check_endpoint(self, endpoint: str) -> None:
        _require_text("endpoint", endpoint, ConfigError)
        self.config.role(endpoint)  # raises ConfigError naming an unknown endpoint

    # -- changing the config --------------------------------------------------------------

    def apply(
        self,
        config: Mapping[str, Any] | str | Path | DispatcherConfig,
        dry_run: bool = False,
        *,
        allowed_class_prefixes: Sequence[str] | None = None,
        timeout: float = 120.0,
    ) -> reconfigure.ApplyResult:
        """Switch the running deployment to ``config`` as its next generation; return the plan and result.

        The new config gets the full preflight; the plan lists the changes and
        the routing difference on recent traffic; with ``dry_run`` nothing
        changes. Otherwise every dispatcher switches between batches (none
        lost, per-user order kept), new endpoints start, changed ones are
        rescaled, removed ones drained and stopped (``ray_dispatch.reconfigure``).

        Raises:
            ConfigError: the new config is invalid (nothing changed).
            ApplyRefused: a dispatcher could not set the new config up (nothing changed; says which and why).
        """
        return reconfigure.apply(
            self, config, dry_run=dry_run, allowed_class_prefixes=allowed_class_prefixes, timeout=timeout
        )

    def rollback(self, timeout: float = 120.0) -> reconfigure.ApplyResult:
        """Apply the generation before the current one again (as a new generation).

        Raises:
            NoEarlierGeneration: the deployment has applied only one config.
            ApplyRefused: as for ``apply``.
        """
        return reconfigure.rollback(self, timeout=timeout)

    def refresh_config(self, timeout: float = 10.0) -> DispatcherConfig:
        """Reload the config in force from the dispatchers (another driver may have applied one); return it."""
        with contextlib.suppress(Exception):
            raw = ray.get(self.dispatchers[0].raw_config.remote(), timeout=timeout)
            if raw != self.config.raw:
                self.config = self.spec = load_config(raw)
        return self.config

    def history(self) -> list[dict[str, Any]]:
        """The config generations this deployment applied, oldest first (``generation``, ``applied_at``, ...)."""
        return reconfigure.history(self)

    # -- messages -----------------------------------------------------------------------

    def send(
        self,
        endpoint: str,
        content: str | None = None,
        *,
        from_addr: str | None = "+27831234567",
        to_addr: str | None = "12345",
        direction: str | None = None,
        trace: bool = False,
        timeout: float = 30.0,
        **fields: Any,
    ) -> dict[str, Any]:
        """Route one message as if it arrived on ``endpoint``; return where it went.

        For a transport name the message is inbound, for an exposed name
        outbound (override with ``direction``; ``event`` takes event fields).

        While the dispatcher restarts, the call is retried (bounded by ``timeout``).

        Raises:
            ConfigError: unknown endpoint.
            InvalidMessage: the message is invalid (nothing is routed).
            GetTimeoutError: no dispatcher answered within ``timeout``.
        """
        self._check_endpoint(endpoint)
        direction = direction or ("inbound" if self.config.is_transport(endpoint) else "outbound")
        if direction == "event":
            payload = {"message_type": "event", "transport_name": endpoint, **fields}
        else:
            payload = {
                "content": content,
                "from_addr": from_addr,
                "to_addr": to_addr,
                "transport_name": fields.pop("transport_name", endpoint),
                "transport_type": fields.pop("transport_type", "sms"),
                **fields,
            }
        payload.setdefault("event_id" if direction == "event" else "message_id", uuid.uuid4().hex)
        deadline = time.monotonic() + timeout
        while True:  # the same ids on every try: receivers drop the duplicate if a try did get through
            try:
                return _get(  # type: ignore[no-any-return]
                    self.dispatchers[0].inject.remote(direction, endpoint, payload, trace),
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            except ray.exceptions.ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- observation ----------------------------------------------------------------------

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """Dispatcher counters, and per endpoint its replicas with alive/dead, node and counters.

        A transport replica also has ``connections`` (each connection to its peer:
        ``state`` — ``connecting``, ``connected``/``bound``/``listening``, ``refused``
        or ``down`` —, ``reason``, ``since``, ``attempts``, ``next_attempt``; see
        ``actors.connection``) and ``connected`` (all up; None: no peer).
        """
        self.refresh_config(timeout)
        dispatchers = []
        for index, handle in enumerate(self.dispatchers):
            try:
                dispatchers.append(ray.get(handle.status.remote(), timeout=timeout))
            except Exception as exc:
                dispatchers.append({"dispatcher": index, "alive": False, "error": one_line(original_error(exc))})
        endpoints: dict[str, Any] = {}
        for endpoint in self.spec.endpoints:
            replicas = {}
            for rid in self.replica_ids(endpoint):
                try:
                    info = ray.get(self.endpoint(endpoint, rid).ping.remote(), timeout=timeout)
                    replicas[rid] = {"alive": True, **info}
                except Exception as exc:
                    replicas[rid] = {"alive": False, "error": one_line(original_error(exc))}
            endpoints[endpoint] = {"role": self.config.role(endpoint), "replicas": replicas}
        autoscaler = find_autoscaler(self.name, self.namespace)
        if autoscaler is not None:
            try:
                scaling: dict[str, Any] = ray.get(autoscaler.state.remote(), timeout=timeout)
            except Exception as exc:
                scaling = {name: {"error": one_line(original_error(exc))} for name in self._autoscaled()}
            for endpoint, state in scaling.items():
                endpoints[endpoint]["autoscaling"] = state
        return {"name": self.name, "namespace": self.namespace, "dispatchers": dispatchers, "endpoints": endpoints}

    def connections(self, endpoint: str, timeout: float = 10.0) -> dict[str, list[dict[str, Any]] | None]:
        """Each replica of transport ``endpoint``: its connection states, or None when it does not answer.

        Raises:
            ConfigError: unknown endpoint.
        """
        self._check_endpoint(endpoint)
        found: dict[str, list[dict[str, Any]] | None] = {}
        for rid in self.replica_ids(endpoint):
            try:
                found[rid] = ray.get(self.endpoint(endpoint, rid).connection_state.remote(), timeout=timeout)
            except Exception:
                found[rid] = None
        return found

    def explain(self, message_id: str, timeout: float = 30.0) -> LiveExplanation:
        """Explain a message (or event) a dispatcher routed recently, by its id.

        Shows what the dispatcher actually did (destinations, failures, the
        live trace if it was sent with ``trace=True``) next to a traced re-run
        with the deployment's config, and says whether the two agree. Each
        dispatcher remembers its last ``recent_outcomes`` messages (config
        key, default 10,000). Prints as text; shows as a table in Jupyter.

        Raises:
            KeyError: no dispatcher remembers that id (the text says how many each keeps).
        """
        refs = [d.explain_message.remote(message_id) for d in self.dispatchers]
        found: list[LiveExplanation] = []
        missing: list[str] = []
        for ref in refs:
            try:
                found.append(_get(ref, timeout=timeout))
            except KeyError as exc:
                missing.append(str(exc.args[0]) if exc.args else repr(exc))
        if not found:
            raise KeyError("; ".join(missing) or f"deployment {self.name!r} has no dispatchers")
        return max(found, key=lambda e: e.recorded.seen_at)

    def graph(
        self, title: str | None = None, timeout: float = 10.0, *, status: dict[str, Any] | None = None
    ) -> Topology:
        """Draw the running deployment: its topology with live message counts, rates and replicas.

        Links carry the messages the dispatchers received from and published to
        each endpoint (per direction in the tooltip), their rate over the
        dispatchers' last interval, and the failure records kept for it now (as
        ``failures list`` shows them: purged or replayed ones are gone); boxes
        show the replicas running, and the dead ones (not answering, or seen
        dying by a dispatcher and not running since). Shown inline in Jupyter;
        ``.save("x.svg")`` or ``.png`` writes a file. ``status`` is a
        ``status()`` the caller already has (else it is asked for).
        """
        info = status if status is not None else self.status(timeout=timeout)
        counts: dict[str, int] = {}
        rates: dict[str, float] = {}
        failed: dict[str, int] = {}
        for dispatcher in info["dispatchers"]:
            stats = dispatcher.get("stats") or {}
            for key, n in [*stats.get("received", {}).items(), *stats.get("published", {}).items()]:
                counts[key] = counts.get(key, 0) + n
            measured = (dispatcher.get("metrics") or {}).get("rates") or {}
            for key, rate in [*measured.get("received", {}).items(), *measured.get("published", {}).items()]:
                rates[key] = rates.get(key, 0.0) + rate
        for handle in self.dispatchers:
            try:
                kept = ray.get(handle.failure_counts.remote(), timeout=timeout)
            except Exception:  # dead, or its failure store is down: as in status, it shows no failures
                continue
            for key, n in kept.items():
                failed[key] = failed.get(key, 0) + n
        replicas = {e: sum(r["alive"] for r in entry["replicas"].values()) for e, entry in info["endpoints"].items()}
        # Dead: listed but not answering, or seen dying by a dispatcher and not running since.
        gone = {
            (r["endpoint"], r["replica_id"])
            for d in info["dispatchers"]
            for r in d.get("dead_replicas") or []
            if r.get("replica_id") not in info["endpoints"].get(r.get("endpoint"), {}).get("replicas", {})
        }
        dead = {
            e: sum(not r["alive"] for r in entry["replicas"].values()) + sum(1 for g in gone if g[0] == e)
            for e, entry in info["endpoints"].items()
        }
        return draw(
            self.config,
            counts=counts,
            replicas=replicas,
            failed=failed,
            dead=dead,
            dispatchers=len(self.dispatchers),
            rates=rates,
            title=title if title is not None else f"deployment {self.name} (namespace {self.namespace}), live",
        )

    def failures(self, direction: str | None = None, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Failure records from every dispatcher, oldest first.

        A dispatcher gone for good is skipped (its in-memory records went with it);
        the survivors' records are still listed.
        """
        records = [r for d in self.dispatchers for r in _unless_dead(d.failures.remote(direction, endpoint), [])]
        return sorted(records, key=lambda r: r["timestamp"])

    def failure(self, failure_id: str) -> dict[str, Any]:
        """One failure record.

        Raises:
            InvalidMessage: ``failure_id`` is not a string.
            KeyError: no dispatcher has a record with that id.
        """
        _require_text("failure_id", failure_id, InvalidMessage)
        for handle in self.dispatchers:
            with contextlib.suppress(KeyError, ray.exceptions.ActorDiedError):
                return _get(handle.failure.remote(failure_id))  # type: ignore[no-any-return]
        raise KeyError(f"no failure record with id {failure_id!r}")

    def replay_failure(self, failure_id: str, endpoint: str | None = None) -> dict[str, Any]:
        """Route a failed message again; its record goes once it succeeds.

        Raises:
            InvalidMessage: ``failure_id`` is not a string.
            ConfigError: ``endpoint`` is given and is not one of the deployment's endpoints.
            KeyError: no dispatcher has a record with that id.
        """
        _require_text("failure_id", failure_id, InvalidMessage)
        if endpoint is not None:
            self._check_endpoint(endpoint)
        for handle in self.dispatchers:
            with contextlib.suppress(KeyError, ray.exceptions.ActorDiedError):
                return _get(handle.replay_failure.remote(failure_id, endpoint))  # type: ignore[no-any-return]
        raise KeyError(f"no failure record with id {failure_id!r}")

    def undeliverable(self, endpoint: str | None = None, clear: bool = False) -> list[dict[str, Any]]:
        """Records endpoints hold of messages no dispatcher took, oldest first, each with its ``replica``.

        Invalid input from a peer (stage ``validate``) and messages the link
        could not hand over (stage ``handoff``; sent again when a dispatcher
        answers again). With ``clear`` the listed replicas forget theirs.
        A replica that does not answer is skipped.

        Raises:
            ConfigError: unknown endpoint.
        """
        if endpoint is not None:
            self._check_endpoint(endpoint)
        records = []
        for name in [endpoint] if endpoint is not None else list(self.spec.endpoints):
            for rid in self.replica_ids(name):
                with contextlib.suppress(ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    held = ray.get(self.endpoint(name, rid).undeliverable.remote(clear), timeout=30)
                    records += [{**record, "replica": rid} for record in held]
        return sorted(records, key=lambda r: r["timestamp"])

    def purge_failures(self, failure_ids: list[str] | None = None) -> int:
        """Remove the given failure records (all when None); return how many were removed.

        Raises:
            InvalidMessage: ``failure_ids`` is not None or a list of strings.
        """
        if failure_ids is not None:
            if isinstance(failure_ids, (str, bytes, Mapping)) or not isinstance(failure_ids, (list, tuple)):
                raise InvalidMessage(
                    f"failure_ids: expected a list of failure ids (or None for all), got {_described(failure_ids)}"
                )
            for index, failure_id in enumerate(failure_ids):
                _require_text(f"failure_ids[{index}]", failure_id, InvalidMessage)
            failure_ids = list(failure_ids)
        return sum(_unless_dead(d.purge_failures.remote(failure_ids), 0) for d in self.dispatchers)

    # -- shutdown -------------------------------------------------------------------------

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop transports (no new input), drain the dispatchers, stop applications, kill every actor.

        The deployment's autoscaler and web console (``ray_dispatch.console``), if they run, go too.
        """
        self.refresh_config()  # the endpoints of the config in force, if another driver applied one
        autoscaler = find_autoscaler(self.name, self.namespace)
        if autoscaler is not None:  # it scales nothing while the rest stops (killed last: it owns replicas)
            _quietly(lambda: ray.get(autoscaler.stop.remote(), timeout=timeout))
        handles = {(e, r): self._handle_or_none(e, r) for e in self.config.endpoint_names for r in self.replica_ids(e)}
        transports = [h for (e, _), h in handles.items() if h and self.config.is_transport(e)]
        applications = [h for (e, _), h in handles.items() if h and not self.config.is_transport(e)]
        _quietly(lambda: ray.get([h.stop.remote() for h in transports], timeout=timeout))
        _quietly(lambda: ray.get([d.drain.remote(timeout) for d in self.dispatchers], timeout=timeout + 5))
        _quietly(lambda: ray.get([h.stop.remote() for h in applications], timeout=timeout))
        _quietly(lambda: ray.get([d.stop.remote(5) for d in self.dispatchers], timeout=10))
        console = None
        with contextlib.suppress(Exception):  # no console runs (ValueError), or Ray is going away
            console = ray.get_actor(console_actor_name(self.name), namespace=self.namespace)
        history = find_history(self.name, self.namespace)
        for handle in [console, *handles.values(), *self.dispatchers, autoscaler, history]:
            if handle is not None:
                _quietly(lambda h=handle: ray.kill(h))
        self._autoscaler = None
        deadline = time.monotonic() + 10
        while dispatcher_names(self.name, self.namespace) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._handles.clear()

    def _handle_or_none(self, endpoint: str, replica: str) -> Any:
        try:
            return self.endpoint(endpoint, replica)
        except DeploymentNotFound:
            return None

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<Deployment {self.name!r} in {self.namespace!r}: {len(self.dispatchers)} dispatcher(s)>"


def _attach_in_cluster(name: str, namespace: str) -> Deployment:
    """The running deployment, attached from inside the cluster (what the autoscaler actor scales through)."""
    return Deployment.attach(name, namespace, address=None)


def _get(ref: Any, timeout: float | None = None) -> Any:
    """``ray.get`` that raises an error an actor raised as itself (``original_error``).

    Ray wraps an actor's exception in a ``RayTaskError`` whose text is the
    remote traceback, or, when the actor's constructor raised, in an
    ``ActorDiedError``; callers get the original ``InvalidMessage``,
    ``ConfigError``, ``KeyError``... with its one-line message instead.
    """
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayError as exc:
        original = original_error(exc)
        if original is exc:
            raise
        raise original from None


_EXCEPTION_LINE = re.compile(r"^(?P<cls>[A-Za-z_][\w.]*): (?P<message>.*)$")


def original_error(exc: BaseException) -> BaseException:
    """The exception an actor raised, when ``exc`` is Ray's wrapper of one; else ``exc`` itself.

    ``RayTaskError`` (a method raised) carries the original as its ``cause``.
    ``ActorDiedError`` of a constructor that raised carries only the remote
    traceback's text: its last line (``module.Class: message``) is rebuilt
    into that class when the class is an exception type loaded here.
    """
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        return original_error(cause) if isinstance(cause, Exception) else exc
    if isinstance(exc, ray.exceptions.ActorDiedError) and exc.actor_init_failed:
        return _creation_error(str(exc)) or exc
    return exc


def _creation_error(text: str) -> Exception | None:
    """Rebuild the exception named on the last ``module.Class: message`` line of a traceback text."""
    for line in reversed(text.strip().splitlines()):
        found = _EXCEPTION_LINE.match(line)
        if not found:
            continue
        module, _, name = found["cls"].rpartition(".")
        cls = getattr(sys.modules.get(module or "builtins"), name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(found["message"])
            except Exception:
                return None
        return None
    return None


def _unless_dead(ref: Any, default: Any) -> Any:
    """``_get(ref)``, or ``default`` when the dispatcher it asked is dead for good (no restarts left)."""
    try:
        return _get(ref)
    except ray.exceptions.ActorDiedError:
        return default


def _is_detached(handle: Any) -> bool:
    """Whether an actor was started detached, from Ray's actor table (False when Ray cannot tell).

    An attached deployment spawns new replicas with the same lifetime as the
    ones already running, so replicas added from a short-lived driver outlive it.
    """
    try:
        info = ray._private.state.actors(handle._actor_id.hex())
        return bool(info.get("IsDetached"))
    except Exception:
        return False


def _described(value: Any) -> str:
    """``value`` for an error line: its type and a short repr."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _require_text(argument: str, value: Any, error: type[DispatchError]) -> None:
    """Raise ``error`` naming ``argument`` unless ``value`` is a string (an endpoint name, a failure id)."""
    if not isinstance(value, str):
        raise error(f"{argument}: expected a string, got {_described(value)}")


def _quietly(action: Any) -> None:
    with contextlib.suppress(Exception):
        action()


def deploy(config: Mapping[str, Any] | str | Path | DispatcherConfig, **kw: Any) -> Deployment:
    """Start a deployment (``Deployment.start``): dispatcher(s) and endpoints, on a local Ray if none runs.

    Raises:
        ConfigError: the config is invalid (checked by ``preflight`` before Ray starts).
    """
    return Deployment.start(config, **kw)


def attach(name: str = DEFAULT_NAME, namespace: str = DEFAULT_NAMESPACE, **kw: Any) -> Deployment:
    """Attach to a running deployment by name (``Deployment.attach``)."""
    return Deployment.attach(name, namespace, **kw)


__all__ = ["DEFAULT_ACTOR_OPTIONS", "Deployment", "DeploymentNotFound", "attach", "deploy", "ensure_ray"]
