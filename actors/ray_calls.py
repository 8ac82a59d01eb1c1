"""The only place that knows how Ray reports failures: calls and error classification."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import ray
from ray import exceptions as rex

from actors.sender import ErrorKind, Order
from actors.watchdog import ReplicaUnresponsive
from actors.wire import encode_batch

_TRANSIENT = (
    rex.ActorUnavailableError,
    rex.GetTimeoutError,
    rex.ObjectLostError,
    rex.OutOfMemoryError,
    rex.RaySystemError,
    rex.ObjectReconstructionFailedError,
)


def classify_ray_error(exc: BaseException) -> ErrorKind:
    """Sort an actor call's exception.

    ``ActorUnavailableError`` (restarting, unreachable) and object-store trouble
    are transient; ``ActorDiedError`` means the actor is gone for good (no
    restarts left), and so is a replica the watchdog gave up on (``ReplicaUnresponsive``);
    an exception raised by the receiver's own code is permanent.
    """
    if isinstance(exc, (rex.ActorDiedError, ReplicaUnresponsive)):
        return "dead"
    if isinstance(exc, _TRANSIENT):
        return "transient"
    if isinstance(exc, rex.RayActorError):
        return "dead"
    return "permanent"


def receive_call(source: str, hops: int = 0) -> Callable[[Any], Callable[[list[bytes], Order], Awaitable[Any]]]:
    """Build ``make_call`` for a pool: a batch of ``encode_item`` items goes to
    ``handle.receive.remote(source, blob, order)`` as one blob (``actors.wire.encode_batch``).

    ``hops`` is the envelope of every batch (``receive(..., hops=hops)``, passed when not 0):
    the dispatcher's pools say 1, the pass through the dispatcher their items do not count yet.
    """

    def make_call(handle: Any) -> Callable[[list[bytes], Order], Awaitable[Any]]:
        if hops:

            async def call(batch: list[bytes], order: Order) -> Any:
                return await handle.receive.remote(source, encode_batch(batch), order, hops=hops)

        else:

            async def call(batch: list[bytes], order: Order) -> Any:
                return await handle.receive.remote(source, encode_batch(batch), order)

        return call

    return make_call


async def probe_replica(handle: Any) -> Any:
    """The watchdog's cheap call to an endpoint replica: its ``ping``."""
    return await handle.ping.remote()


def current_node_id() -> str:
    """Return the id of the node this process runs on (empty outside Ray)."""
    try:
        return str(ray.get_runtime_context().get_node_id())
    except Exception:
        return ""
