"""``GenerationsActor``: a deployment's config history, kept apart from its dispatchers.

One small named actor per deployment (``<deployment>:generations``) holds the
``GenerationHistory`` (``ray_dispatch.core.generations``): the configs the
deployment applied, numbered. A dispatcher that Ray restarts asks it which
generation is in force (its constructor only has the config it was first
started with); ``ray-dispatch history`` lists it and ``apply --rollback``
takes the previous entry from it.
"""

from __future__ import annotations

from typing import Any

import ray

from ray_dispatch.core.generations import Generation, GenerationHistory

HISTORY_SUFFIX = "generations"


def history_actor_name(deployment: str) -> str:
    """The Ray actor name of ``deployment``'s history (two parts: never taken for an endpoint replica)."""
    return f"{deployment}:{HISTORY_SUFFIX}"


class GenerationsActor:
    """Holds one deployment's ``GenerationHistory`` (see the module docstring)."""

    def __init__(self) -> None:
        self.history = GenerationHistory()

    async def record(self, config: dict[str, Any], **fields: Any) -> Generation:
        """Add the generation now in force; return it (``GenerationHistory.record``, same keywords).

        Raises:
            ValueError: ``number`` is not above the current one's.
        """
        return self.history.record(config, **fields)

    async def current(self) -> Generation | None:
        """The generation in force (None: none recorded yet)."""
        return self.history.current

    async def rollback_target(self) -> Generation:
        """The generation before the current one.

        Raises:
            NoEarlierGeneration: there is none.
        """
        return self.history.rollback_target()

    async def summaries(self) -> list[dict[str, Any]]:
        """Every generation remembered (without configs), oldest first."""
        return self.history.summaries()


def find_history(deployment: str, namespace: str | None = None) -> Any:
    """The handle of ``deployment``'s history actor, or None when it has none."""
    try:
        return ray.get_actor(history_actor_name(deployment), namespace=namespace)
    except ValueError:
        return None


def start_history(deployment: str, namespace: str, *, detached: bool) -> Any:
    """Start (or find) ``deployment``'s history actor; return its handle.

    Its lifetime follows the deployment's (``detached``); it takes no CPU.
    """
    remote: Any = ray.remote(GenerationsActor)
    lifetime = {"lifetime": "detached"} if detached else {}
    return remote.options(  # type: ignore[attr-defined]
        name=history_actor_name(deployment),
        namespace=namespace,
        get_if_exists=True,
        num_cpus=0,
        max_restarts=0,
        **lifetime,
    ).remote()
