"""Fail over from a replica whose calls hang: probe it after a deadline, evict it if it does not answer.

When a node is lost without a goodbye, calls to the actors on it neither
succeed nor fail until Ray declares the node dead (about 15 s with Ray's
default health checks). A dispatcher batch completes only when all its
deliveries do, so one such replica would pause the whole stream. The
watchdog sees every call a pool makes (``watched`` wraps the pool's call
factory); when a call to a replica has gone unconfirmed for ``call_deadline``
seconds (counted from the batch's first attempt, so a batch the sender keeps
retrying counts as one call) it probes the replica with a cheap call. If the
probe gets no answer within ``probe_timeout``, the replica is evicted (``ReplicaPool.evict`` sends
what it had queued to the others) and its hanging calls are given up: they
fail with ``ReplicaUnresponsive``, which the pool treats as a dead receiver,
so their batches go to the other replicas too, and so do the sender's retries
of them. Receivers drop duplicates by message id, so a batch the lost
replica did handle is harmless to resend.

A replica that has not confirmed any call yet is left alone: it may still be
starting (Ray queues calls and pings to an actor until its constructor is
done), and giving up on it would only deliver its first batches twice. The
last replica of a pool is never evicted: with nobody to take its
messages they would fail, while waiting lets them through once Ray restarts
it. An evicted replica stays suspected: it is probed every round and added back
to its pool once it answers (Ray restarted it elsewhere, or the node came
back). Until then, finding it by name (``DispatcherActor.refresh``) must not
add it back: ask ``suspected``.

This module imports no Ray: the probe is injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from actors.pool import Replica, ReplicaPool
from actors.sender import Call, ErrorKind, Order

log = logging.getLogger(__name__)

_MAX_RETRIED = 10_000
"""How many failed batches' first-try times are kept for their retries."""

MakeCall = Callable[[Any], Call]
"""A pool's call factory: builds the batch-send call for one replica's target."""


class ReplicaUnresponsive(Exception):
    """A call to a replica was given up: unconfirmed past the deadline, and the replica did not answer a probe."""


@dataclass(eq=False)
class _Call:
    """One call in flight to a replica: when its batch was first tried, the task awaiting it, whether given up."""

    started: float
    task: asyncio.Future[Any]
    given_up: str | None = None  # why, once given up


class ReplicaWatchdog:
    """Evicts replicas whose calls hang and that do not answer a probe; adds them back when they answer.

    Args:
        pools: the pools to watch, by endpoint name (the dict may be filled later).
        probe: a cheap call to a replica's target; answering at all means alive.
        call_deadline: seconds a call may go unconfirmed before its replica is probed.
        probe_timeout: seconds a probe may take before the replica counts as unresponsive.
        classify: sorts a call's exception as the pools do; a batch whose call failed
            ``transient`` is one the sender tries again, still counted from its first try.
        clock: monotonic clock (injectable).
    """

    def __init__(
        self,
        pools: Mapping[str, ReplicaPool],
        probe: Callable[[Any], Awaitable[Any]],
        *,
        call_deadline: float = 2.0,
        probe_timeout: float = 1.0,
        classify: Callable[[BaseException], ErrorKind] = lambda exc: "transient",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pools = pools
        self.call_deadline = call_deadline
        self.probe_timeout = probe_timeout
        self._probe = probe
        self._classify = classify
        self._clock = clock
        self._calls: dict[int, set[_Call]] = {}  # by id() of the replica's target
        self._retried: OrderedDict[tuple[Any, ...], float] = OrderedDict()  # (target, sender, seq) -> first try
        self._suspects: dict[tuple[str, str], Any] = {}  # (endpoint, replica id) -> target
        self._given_up: dict[int, str] = {}  # id() of a suspect's target -> why it was given up
        self._confirmed: set[int] = set()  # id() of targets that confirmed a call: done starting
        self.evictions = 0

    # -- wiring -------------------------------------------------------------------

    def watched(self, make_call: MakeCall) -> MakeCall:
        """Wrap a pool's ``make_call`` so that every call it builds is seen (and can be given up) here."""

        def make(target: Any) -> Call:
            call = make_call(target)
            key = id(target)

            async def watched_call(batch: list[Any], order: Order) -> Any:
                if key in self._given_up:  # a retry to an evicted replica: its batch goes to the others now
                    raise ReplicaUnresponsive(self._given_up[key])
                attempt = (key, order[0], order[1])
                first_try = self._retried.pop(attempt, None)
                entry = _Call(first_try or self._clock(), asyncio.ensure_future(call(batch, order)))
                calls = self._calls.setdefault(key, set())
                calls.add(entry)
                try:
                    result = await entry.task
                    self._confirmed.add(key)
                    return result
                except asyncio.CancelledError:
                    if entry.given_up is not None:
                        raise ReplicaUnresponsive(entry.given_up) from None
                    raise
                except Exception as exc:
                    if self._classify(exc) == "transient":  # the sender tries this batch again
                        self._remember_first_try(attempt, entry.started)
                    raise
                finally:
                    calls.discard(entry)
                    if not calls:
                        self._calls.pop(key, None)

            return watched_call

        return make

    def _remember_first_try(self, attempt: tuple[Any, ...], started: float) -> None:
        self._retried[attempt] = started
        while len(self._retried) > _MAX_RETRIED:  # batches that were not tried again
            self._retried.popitem(last=False)

    def suspected(self, endpoint: str, replica_id: str) -> bool:
        """Whether the replica was evicted for not answering and has not answered since."""
        return (endpoint, replica_id) in self._suspects

    def forget(self, endpoint: str, replica_id: str) -> None:
        """Stop probing an evicted replica (it is being removed on purpose): it will not be added back."""
        target = self._suspects.pop((endpoint, replica_id), None)
        self._given_up.pop(id(target), None)

    # -- checking -----------------------------------------------------------------

    async def run(self, interval: float) -> None:
        """Check every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception:  # a bug here must not end failover for good
                log.exception("replica watchdog check failed")

    async def check(self) -> list[str]:
        """One round: probe overdue replicas and suspects; evict the silent, add back the answering.

        Returns ``endpoint[replica]`` of every replica evicted in this round.
        """
        overdue = [
            (name, pool, replica)
            for name, pool in self.pools.items()
            for replica in pool.replicas
            if id(replica.target) in self._confirmed and self._overdue(replica.target)
        ]
        suspects = list(self._suspects.items())
        answers = await asyncio.gather(
            *(self._answers(replica.target) for _, _, replica in overdue),
            *(self._answers(target) for _, target in suspects),
        )
        evicted = []
        for (name, pool, replica), answered in zip(overdue, answers, strict=False):
            if not answered and len(pool.replicas) > 1:  # the last one keeps its messages: nobody else could
                await self._evict(name, pool, replica)
                evicted.append(f"{name}[{replica.replica_id}]")
        for ((name, replica_id), target), answered in zip(suspects, answers[len(overdue) :], strict=True):
            if answered and (name, replica_id) in self._suspects and name in self.pools:
                del self._suspects[(name, replica_id)]
                self._given_up.pop(id(target), None)
                self.pools[name].add(replica_id, target)
                log.warning("endpoint %r replica %r answers again; it takes messages again", name, replica_id)
        return evicted

    def _overdue(self, target: Any) -> bool:
        """Whether a batch to ``target`` was first tried ``call_deadline`` ago and is in flight or awaits a retry."""
        key, limit = id(target), self._clock() - self.call_deadline
        return any(call.started <= limit for call in self._calls.get(key, ())) or any(
            started <= limit for (k, *_), started in self._retried.items() if k == key
        )

    async def _answers(self, target: Any) -> bool:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._probe(target), self.probe_timeout)
            return True
        return False

    async def _evict(self, endpoint: str, pool: ReplicaPool, replica: Replica) -> None:
        """Suspect the replica, take it out of its pool and give up its calls (their batches go to the others)."""
        why = (
            f"endpoint {endpoint!r} replica {replica.replica_id!r}: a call went unconfirmed for"
            f" {self.call_deadline:g} s and a probe got no answer within {self.probe_timeout:g} s"
        )
        self.evictions += 1
        self._suspects[(endpoint, replica.replica_id)] = replica.target
        self._given_up[id(replica.target)] = why
        for attempt in [a for a in self._retried if a[0] == id(replica.target)]:
            del self._retried[attempt]  # its batches go to the others now
        await pool.evict(replica.replica_id, ReplicaUnresponsive(why))
        for call in sorted(self._calls.get(id(replica.target), ()), key=lambda c: c.started):
            call.given_up = why
            call.task.cancel()
