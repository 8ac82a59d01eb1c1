"""ReplicaWatchdog: a replica whose calls hang and that answers no probe loses its messages to the others (no Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.pool import ReplicaPool
from actors.ray_calls import classify_ray_error
from actors.sender import ErrorKind, SenderOptions
from actors.watchdog import ReplicaUnresponsive, ReplicaWatchdog


class Replica:
    """A fake replica: records what it got; its calls hang while it is busy, and its probes too while it is lost."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[Any] = []
        self.answering = asyncio.Event()  # calls
        self.answering.set()
        self.alive = asyncio.Event()  # probes
        self.alive.set()
        self.probes = 0
        self.restarting = False  # calls fail at once with ``Restarting``
        self.tries = 0

    def lose(self) -> None:
        """Behave like an actor on a node that vanished: calls and probes get no answer."""
        self.answering.clear()
        self.alive.clear()

    def come_back(self) -> None:
        """Answer calls and probes again (restarted elsewhere)."""
        self.answering.set()
        self.alive.set()

    async def call(self, batch: list[Any], *order: object) -> list[tuple[int, str]]:
        self.tries += 1
        if self.restarting:
            raise Restarting("the actor is being restarted")
        await self.answering.wait()
        self.got.extend(batch)
        return []


async def probe(replica: Replica) -> None:
    replica.probes += 1
    await replica.alive.wait()


class Restarting(Exception):
    """What a call to a replica that is being restarted raises (transient: the sender tries again)."""


def classify(exc: BaseException) -> ErrorKind:
    if isinstance(exc, ReplicaUnresponsive):
        return "dead"
    return "transient" if isinstance(exc, Restarting) else "permanent"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def make(
    *names: str, warm: bool = True, **options: Any
) -> tuple[ReplicaWatchdog, ReplicaPool, dict[str, Replica], Clock, list[str]]:
    """A watchdog over one sticky pool of fake replicas; ``warm``: each has confirmed calls (done starting)."""
    clock = Clock()
    pools: dict[str, ReplicaPool] = {}
    watchdog = ReplicaWatchdog(pools, probe, call_deadline=2.0, probe_timeout=0.05, classify=classify, clock=clock)
    dead: list[str] = []
    pool = ReplicaPool(
        "app",
        watchdog.watched(lambda target: target.call),
        "sticky",
        classify=classify,
        on_replica_dead=lambda endpoint, rid, exc: dead.append(f"{endpoint}[{rid}]: {exc}"),
        **options,
    )
    pools["app"] = pool
    replicas = {n: Replica(n) for n in names}
    for name, replica in replicas.items():
        pool.add(name, replica)
    if warm:
        await asyncio.wait_for(asyncio.gather(*await send_all(pool)), 10)
        assert all(r.got for r in replicas.values())
        for replica in replicas.values():
            replica.got.clear()
    return watchdog, pool, replicas, clock, dead


USERS = [f"+2782{i:05d}" for i in range(40)]


async def send_all(pool: ReplicaPool) -> list[asyncio.Future[Any]]:
    return [await pool.send(user, key=user) for user in USERS]


async def send_all_past_the_deadline(pool: ReplicaPool, clock: Clock) -> list[asyncio.Future[Any]]:
    """Send to every user, let the first calls start, then move the clock past the call deadline."""
    futures = await send_all(pool)
    await asyncio.sleep(0.01)  # the first batches are now in flight
    clock.now += 2.0
    return futures


async def test_a_replica_that_hangs_and_does_not_answer_the_probe_hands_every_message_to_the_others() -> None:
    watchdog, pool, replicas, clock, dead = await make("lost", "spare")
    replicas["lost"].lose()
    futures = await send_all(pool)
    await asyncio.sleep(0.01)  # the first batches are now in flight
    assert await watchdog.check() == []  # nothing is overdue yet: no probe
    assert replicas["lost"].probes == 0
    clock.now += 2.0
    assert await watchdog.check() == ["app[lost]"]
    assert replicas["lost"].probes == 1
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert sorted(replicas["spare"].got) == USERS and replicas["lost"].got == []
    assert [r.replica_id for r in pool.replicas] == ["spare"]
    assert watchdog.suspected("app", "lost")
    why = "a call went unconfirmed for 2 s and a probe got no answer within 0.05 s"
    assert dead == [f"app[lost]: endpoint 'app' replica 'lost': {why}"]
    await pool.close()


async def test_a_slow_replica_that_answers_the_probe_keeps_its_messages() -> None:
    watchdog, pool, replicas, clock, dead = await make("slow", "other")
    replicas["slow"].answering.clear()  # busy, not gone: calls take long, probes are answered
    futures = await send_all_past_the_deadline(pool, clock)
    assert await watchdog.check() == []
    replicas["slow"].answering.set()
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert replicas["slow"].probes == 1
    assert replicas["slow"].got and sorted(replicas["slow"].got + replicas["other"].got) == USERS
    assert dead == [] and not watchdog.suspected("app", "slow")
    await pool.close()


async def test_an_evicted_replica_is_added_back_once_it_answers_and_not_after_a_forget() -> None:
    watchdog, pool, replicas, clock, _ = await make("lost", "spare")
    replicas["lost"].lose()
    futures = await send_all_past_the_deadline(pool, clock)
    await watchdog.check()
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    await watchdog.check()  # still silent: stays out
    assert [r.replica_id for r in pool.replicas] == ["spare"]
    replicas["lost"].come_back()  # restarted elsewhere
    await watchdog.check()
    assert sorted(r.replica_id for r in pool.replicas) == ["lost", "spare"]
    assert not watchdog.suspected("app", "lost")
    replicas["spare"].got.clear()
    await asyncio.wait_for(asyncio.gather(*await send_all(pool)), 10)
    assert replicas["lost"].got and sorted(replicas["lost"].got + replicas["spare"].got) == USERS

    replicas["lost"].lose()
    futures = await send_all_past_the_deadline(pool, clock)
    await watchdog.check()
    watchdog.forget("app", "lost")  # removed on purpose meanwhile
    replicas["lost"].come_back()
    await watchdog.check()
    assert [r.replica_id for r in pool.replicas] == ["spare"]
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    await pool.close()


async def test_a_batch_retried_past_the_deadline_counts_from_its_first_try() -> None:
    """Calls that fail at once (a replica being restarted) and are retried are one overdue call, not many new ones."""
    retry = {"retry": {"initial_delay": 0.001, "max_delay": 0.001, "max_attempts": 1_000_000}}
    watchdog, pool, replicas, clock, _ = await make("restarting", "spare", options=SenderOptions.model_validate(retry))
    replicas["restarting"].tries = 0
    replicas["restarting"].restarting = True
    replicas["restarting"].alive.clear()
    futures = await send_all(pool)
    for _ in range(10_000):
        if replicas["restarting"].tries >= 3:  # tried, failed, tried again
            break
        await asyncio.sleep(0.001)
    assert replicas["restarting"].tries >= 3
    clock.now += 2.0
    assert await watchdog.check() == ["app[restarting]"]
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert sorted(replicas["spare"].got) == USERS
    await pool.close()


async def test_the_last_replica_is_not_evicted_its_messages_wait_for_it() -> None:
    watchdog, pool, replicas, clock, dead = await make("only")
    replicas["only"].lose()
    futures = await send_all_past_the_deadline(pool, clock)
    assert await watchdog.check() == []
    assert replicas["only"].probes == 1 and [r.replica_id for r in pool.replicas] == ["only"]
    replicas["only"].come_back()  # Ray restarted it
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert sorted(replicas["only"].got) == USERS and dead == []
    await pool.close()


async def test_a_replica_that_never_confirmed_a_call_is_still_starting_and_left_alone() -> None:
    watchdog, pool, replicas, clock, dead = await make("starting", "other", warm=False)
    replicas["starting"].lose()  # a new actor whose constructor has not finished: calls and pings queue
    futures = await send_all_past_the_deadline(pool, clock)
    assert await watchdog.check() == []
    assert replicas["starting"].probes == 0 and not watchdog.suspected("app", "starting")
    replicas["starting"].come_back()
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert sorted(replicas["starting"].got + replicas["other"].got) == USERS and dead == []
    await pool.close()


def test_ray_error_classification_treats_an_unresponsive_replica_as_dead() -> None:
    assert classify_ray_error(ReplicaUnresponsive("gone quiet")) == "dead"
