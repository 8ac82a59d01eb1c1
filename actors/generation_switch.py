"""The dispatcher's side of a live reconfiguration: a two-phase switch between batches.

``ray_dispatch.reconfigure`` applies a new config to every dispatcher replica
in two phases:

1. ``prepare_generation(n, config)``: the replica builds a successor core for
   the new config (``Dispatcher.successor``: same outbox, counters and,
   when the store blocks are unchanged, the same stores, so routing state is
   kept) and sets up its middleware and router (``setup_routing``), without
   routing anything with it. New endpoints get their replica pools. An error
   here is raised as itself; nothing changed.
2. ``commit_generation(n)``: the replica swaps cores under the lock that
   routes one batch at a time, so a batch is routed wholly by the old core or
   wholly by the new one and per-sender order is kept; then it tears the
   old router and middleware down. Or ``abort_generation(n)``: the successor
   is torn down and the pools it added are closed.

A dispatcher that Ray restarts is built from the config it was first started
with; ``adopt_current_generation`` (called as it starts) switches it to the
generation the deployment's history says is in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import ray

from actors.history import find_history
from actors.naming import dispatcher_actor_name
from actors.pool import ReplicaPool
from ray_dispatch.core.config import DispatcherConfig, EndpointSpec, load_config
from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.errors import DispatchError
from ray_dispatch.core.recent import RecentOutcomes

log = logging.getLogger(__name__)


class GenerationMismatch(DispatchError):
    """``commit_generation`` named a generation this dispatcher has not prepared."""


class GenerationSwitch:
    """Mixin of ``DispatcherActor``: prepare, commit or abort a config generation (module docstring)."""

    # Provided by DispatcherActor.
    core: Dispatcher
    spec: DispatcherConfig
    pools: dict[str, ReplicaPool]
    deployment: str
    index: int
    recent: RecentOutcomes
    _route_lock: asyncio.Lock
    _allowed_class_prefixes: Sequence[str] | None

    _prepared: tuple[int, Dispatcher, list[str]] | None = None
    applied_at: float = 0.0

    def _new_pool(self, name: str, endpoint: EndpointSpec) -> ReplicaPool:  # pragma: no cover - DispatcherActor's
        raise NotImplementedError

    async def prepare_generation(self, generation: int, config: dict[str, Any]) -> dict[str, Any]:
        """Build and set up the router and middleware of ``config`` as generation ``generation``; do not use them.

        Raises:
            ConfigError: the config, or the router or a middleware at setup, refused it.
            Exception: whatever else ``setup_routing`` or a middleware's setup raised.
        """
        await self.abort_generation(None)
        successor = self.core.successor(config, generation, allowed_class_prefixes=self._allowed_class_prefixes)
        try:
            await successor.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await successor.middleware.teardown()
            await _close_unshared(successor, self.core)
            raise
        added = [name for name in successor.config.endpoints if name not in self.pools]
        for name in added:
            self.pools[name] = self._new_pool(name, successor.config.endpoints[name])
        self._prepared = (generation, successor, added)
        return {"dispatcher": self.index, "generation": generation, "prepared": True}

    async def commit_generation(self, generation: int) -> dict[str, Any]:
        """Route with the prepared generation from the next batch on; tear the old router down.

        Raises:
            GenerationMismatch: ``generation`` is not the one prepared here.
        """
        prepared = self._prepared
        if prepared is None or prepared[0] != generation:
            have = "nothing" if prepared is None else f"generation {prepared[0]}"
            raise GenerationMismatch(
                f"dispatcher {self.index} cannot commit generation {generation}: it has {have} prepared"
            )
        _, successor, _ = prepared
        async with self._route_lock:  # between batches: none is being routed now
            previous, self.core, self.spec = self.core, successor, successor.config
            self.applied_at = time.time()
            self._prepared = None
        await previous.retire(successor)
        return self.generation_info()

    async def abort_generation(self, generation: int | None) -> bool:
        """Forget the prepared generation (``generation``, or any when None); return whether one was.

        Its router and middleware are torn down, the stores it does not share
        are closed and the pools it added for new endpoints are closed.
        """
        prepared = self._prepared
        if prepared is None or (generation is not None and prepared[0] != generation):
            return False
        self._prepared = None
        _, successor, added = prepared
        await successor.retire(self.core)
        for name in added:
            pool = self.pools.pop(name, None)
            if pool is not None:
                await pool.close()
        return True

    async def drop_endpoint_pools(self, endpoints: list[str]) -> list[str]:
        """Close the pools of ``endpoints`` the current config no longer has; return those closed."""
        dropped = []
        for name in endpoints:
            if name not in self.core.config.endpoints and name in self.pools:
                await self.pools.pop(name).close()
                dropped.append(name)
        return dropped

    def generation_info(self) -> dict[str, Any]:
        """This dispatcher's generation and when it switched to it."""
        return {"dispatcher": self.index, "generation": self.core.generation, "applied_at": self.applied_at}

    async def generation_status(self) -> dict[str, Any]:
        """``generation_info`` (remote form)."""
        return self.generation_info()

    async def recent_records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` messages routed here (default all remembered), oldest first, as dicts.

        Each has ``generation`` (the config generation that routed it) and the
        message as it arrived: the traffic an apply's routing difference replays.
        """
        return [record.to_dict() for record in self.recent.recorded(limit)]

    async def adopt_current_generation(self) -> bool:
        """Before routing: switch to the generation the deployment's history has in force; return whether it did.

        A dispatcher Ray restarted is built from the config it was first started
        with; this brings it to the config the deployment applied since.
        """
        history = find_history(self.deployment, self._own_namespace())
        if history is None or self.core.started:
            return False
        current = await history.current.remote()
        if current is None or current.number == self.core.generation:
            if current is not None:
                self.applied_at = current.applied_at
            return False
        previous = self.core
        self.core = previous.successor(
            load_config(current.config), current.number, allowed_class_prefixes=self._allowed_class_prefixes
        )
        self.spec = self.core.config
        self.applied_at = current.applied_at
        await _close_unshared(previous, self.core)
        for name, endpoint in self.core.config.endpoints.items():
            if name not in self.pools:
                self.pools[name] = self._new_pool(name, endpoint)
        await self.drop_endpoint_pools(list(self.pools))
        log.info("dispatcher %s of %r restarted on generation %s", self.index, self.deployment, current.number)
        return True

    def _own_namespace(self) -> str | None:
        """The Ray namespace this dispatcher's name lives in (the deployment's; None if not found)."""
        name = dispatcher_actor_name(self.deployment, self.index)
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["name"] == name:
                return str(entry["namespace"])
        return None


async def _close_unshared(dispatcher: Dispatcher, keeper: Dispatcher) -> None:
    """Close the stores of ``dispatcher`` (never started, or failed to start) that ``keeper`` does not share."""
    for mine, theirs in ((dispatcher.store, keeper.store), (dispatcher.failures, keeper.failures)):
        if mine is not theirs:
            with contextlib.suppress(Exception):
                await mine.close()


__all__ = ["GenerationMismatch", "GenerationSwitch"]
