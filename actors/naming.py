"""The names of a deployment's actors, and finding them by name (one place for both).

Every actor of a deployment is a named Ray actor in the deployment's namespace:
``<deployment>:dispatcher:<index>`` for the dispatchers and
``<deployment>:<endpoint>:<replica>`` for endpoint replicas (and
``<deployment>::console`` for its web console), so any driver (or
a restarted actor) finds them without being handed their handles.
"""

from __future__ import annotations

from typing import Any

import ray

from ray_dispatch.core.config import DISPATCHER_NAME as DISPATCHER


def endpoint_actor_name(deployment: str, endpoint: str, replica_id: str) -> str:
    """The Ray actor name of one endpoint replica."""
    return f"{deployment}:{endpoint}:{replica_id}"


def dispatcher_actor_name(deployment: str, index: int) -> str:
    """The Ray actor name of one dispatcher replica."""
    return f"{deployment}:{DISPATCHER}:{index}"


def autoscaler_actor_name(deployment: str) -> str:
    """The Ray actor name of a deployment's autoscaler (``::`` so no endpoint name can match it)."""
    return f"{deployment}::autoscaler"


def console_actor_name(deployment: str) -> str:
    """The Ray actor name of a deployment's web console (``ray_dispatch.console``).

    The double colon keeps it apart from every endpoint replica's name (an
    endpoint name is never empty).
    """
    return f"{deployment}::console"


def _named(prefix: str, namespace: str | None) -> list[tuple[str, str, str]]:
    """``(suffix, name, namespace)`` of the named actors whose name starts with ``prefix``."""
    return [
        (entry["name"][len(prefix) :], entry["name"], entry["namespace"])
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["name"].startswith(prefix) and (namespace is None or entry["namespace"] == namespace)
    ]


def _by_number(suffix: str) -> tuple[int, str]:
    return (len(suffix), suffix)


def dispatcher_names(deployment: str, namespace: str | None = None) -> list[str]:
    """Names of ``deployment``'s dispatcher actors now running (in ``namespace``, or any), in index order."""
    found = _named(f"{deployment}:{DISPATCHER}:", namespace)
    return [name for _, name, _ in sorted(found, key=lambda f: _by_number(f[0]))]


def find_dispatchers(deployment: str, namespace: str | None = None) -> list[Any]:
    """Handles of ``deployment``'s dispatcher actors (in ``namespace``, or any), in index order."""
    found = _named(f"{deployment}:{DISPATCHER}:", namespace)
    return [ray.get_actor(name, namespace=ns) for _, name, ns in sorted(found, key=lambda f: _by_number(f[0]))]


def replica_ids(deployment: str, endpoint: str, namespace: str) -> list[str]:
    """Replica ids of ``endpoint`` now running in ``namespace`` (by actor name), numbers in order."""
    return sorted((suffix for suffix, _, _ in _named(f"{deployment}:{endpoint}:", namespace)), key=_by_number)
