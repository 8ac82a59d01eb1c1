"""ReplicaPool: replica policies, dead replicas, removal without loss, rate limits (no Ray)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from actors.pool import ReplicaPool
from actors.sender import SenderOptions
from actors.throttle import TokenBucket
from ray_dispatch.core.errors import DeliveryError
from ray_dispatch.core.receipts import BatchReceipt


class Replica:
    """A fake replica: records what it got; can be dead or slow."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[Any] = []
        self.dead = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def call(self, batch: list[Any], *order: object) -> list[tuple[int, str]]:
        await self.gate.wait()
        if self.dead:
            raise RuntimeError(f"{self.name} died")
        self.got.extend(batch)
        return []


def make_pool(policy: str, *names: str, **kw: Any) -> tuple[ReplicaPool, dict[str, Replica]]:
    replicas = {n: Replica(n) for n in names}
    pool = ReplicaPool("app", lambda target: target.call, policy, classify=lambda exc: "dead", **kw)  # type: ignore[arg-type]
    for name, replica in replicas.items():
        pool.add(name, replica)
    return pool, replicas


async def test_round_robin_spreads_evenly() -> None:
    pool, replicas = make_pool("round_robin", "a", "b", "c")
    await asyncio.gather(*[await pool.send(i) for i in range(30)])
    assert [len(r.got) for r in replicas.values()] == [10, 10, 10]
    await pool.close()


async def test_sticky_keeps_each_user_on_one_replica_and_removal_moves_only_its_users() -> None:
    pool, replicas = make_pool("sticky", "a", "b", "c")
    users = [f"+2782{i:05d}" for i in range(60)]
    for _ in range(3):
        await asyncio.gather(*[await pool.send(u, key=u) for u in users])
    home = {u: n for n, r in replicas.items() for u in set(r.got)}
    assert all(Counter(r.got)[u] == 3 for r in replicas.values() for u in set(r.got))
    assert len(home) == 60 and len(set(home.values())) == 3
    await pool.remove("c")
    for r in replicas.values():
        r.got.clear()
    await asyncio.gather(*[await pool.send(u, key=u) for u in users])
    moved = {u for n, r in replicas.items() for u in r.got if home[u] != n}
    assert moved == {u for u, n in home.items() if n == "c"}
    await pool.close()


async def test_least_loaded_prefers_the_idle_replica() -> None:
    pool, replicas = make_pool("least_loaded", "slow", "fast")
    replicas["slow"].gate.clear()
    first = await pool.send("first")  # a tie goes to the first replica: "slow", which now holds it
    futures = []
    for i in range(10):
        futures.append(await pool.send(i))
        await asyncio.sleep(0.005)  # let "fast" confirm before the next pick
    assert replicas["fast"].got == list(range(10))
    replicas["slow"].gate.set()
    await asyncio.gather(first, *futures)
    assert replicas["slow"].got == ["first"]
    await pool.close()


async def test_a_dead_replicas_unconfirmed_messages_go_to_the_others_in_order() -> None:
    told: list[str] = []
    pool, replicas = make_pool(
        "round_robin",
        "a",
        "b",
        on_replica_dead=lambda e, r, exc: told.append(r),
        options=SenderOptions(max_in_flight=1),
    )
    replicas["a"].dead = True
    futures = [await pool.send(i) for i in range(20)]
    results = await asyncio.wait_for(asyncio.gather(*futures), 2)
    assert all(results)
    assert sorted(replicas["b"].got) == list(range(20))
    moved = [i for i in replicas["b"].got if i % 2 == 0]
    assert moved == sorted(moved), "redelivered in their original order"
    assert told == ["a"] and [r.replica_id for r in pool.replicas] == ["b"]
    await pool.close()


async def test_no_replicas_left_is_a_delivery_error() -> None:
    pool, replicas = make_pool("round_robin", "a")
    replicas["a"].dead = True
    future = await pool.send("m")
    with pytest.raises(DeliveryError, match="no replicas"):
        await asyncio.wait_for(future, 1)
    with pytest.raises(DeliveryError, match="no replicas"):
        await pool.send("n")
    await pool.close()


async def test_removing_a_replica_waits_for_its_messages_and_loses_none() -> None:
    pool, replicas = make_pool("round_robin", "a", "b")
    replicas["a"].gate.clear()
    futures = [await pool.send(i) for i in range(10)]
    removal = asyncio.ensure_future(pool.remove("a"))
    await asyncio.sleep(0.01)
    assert not removal.done()
    later = [await pool.send(i) for i in range(10, 20)]
    await asyncio.wait_for(asyncio.gather(*later), 1)  # a draining replica takes nothing new
    assert set(range(10, 20)) <= set(replicas["b"].got)
    replicas["a"].gate.set()
    assert await removal is True
    await asyncio.gather(*futures, *later)
    assert sorted(replicas["a"].got + replicas["b"].got) == list(range(20))
    assert set(replicas["a"].got) <= set(range(10))
    await pool.close()


async def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown replica policy 'random'"):
        ReplicaPool("app", lambda t: t, "random")  # type: ignore[arg-type]


def test_token_bucket_allows_the_rate_in_bursts_and_says_how_long_to_wait() -> None:
    now = [0.0]
    bucket = TokenBucket(10, burst=2, clock=lambda: now[0])
    assert bucket.available() == 2 and bucket.delay() == 0
    bucket.spend(2)
    assert bucket.available() == 0 and bucket.delay() == pytest.approx(0.1)
    now[0] += 0.25
    assert bucket.available() == 2, "refilled at 10 per second, capped at the burst"
    now[0] += 10
    assert bucket.available() == 2
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst must be at least 1"):
        TokenBucket(5, burst=0.5)


async def test_pool_rate_limit_throttles_sends() -> None:
    pool, replicas = make_pool("round_robin", "a", rate_limit=200)
    loop = asyncio.get_running_loop()
    start = loop.time()
    futures = [await pool.send(i) for i in range(250)]
    await asyncio.gather(*futures)
    assert loop.time() - start >= 0.2, "250 messages at 200/s (burst 200) take at least 0.25 s"
    assert replicas["a"].got == list(range(250))
    await pool.close()


async def test_a_rate_limited_batch_is_queued_at_once_and_paced_by_the_sender() -> None:
    """The tokens are waited for where the items queue: whoever handed them over goes on at once."""
    replicas = {name: Replica(name) for name in "ab"}
    calls: list[int] = []

    def counting(replica: Replica) -> Any:
        async def call(batch: list[Any], *order: object) -> list[tuple[int, str]]:
            calls.append(len(batch))
            return await replica.call(batch, *order)

        return call

    pool = ReplicaPool("app", counting, "round_robin", rate_limit=50)
    for name, replica in replicas.items():
        pool.add(name, replica)
    receipt = new_receipt(120)
    pool.queue_batch(list(range(120)), None, receipt)  # returns at once: nothing waits for tokens here
    for _ in range(20):  # the senders' first calls go out
        await asyncio.sleep(0)
    assert 0 < sum(len(r.got) for r in replicas.values()) <= 50, "no more than the burst went before a refill"
    await asyncio.wait_for(receipt, 10)
    assert sorted(replicas["a"].got + replicas["b"].got) == list(range(120))
    assert replicas["a"].got == sorted(replicas["a"].got) and replicas["b"].got == sorted(replicas["b"].got)
    assert max(calls) <= 50 and sum(calls) == 120, "each call carried at most the tokens the shared bucket had"
    await pool.close()


def new_receipt(size: int) -> BatchReceipt:
    receipt = BatchReceipt()
    for _ in range(size):
        receipt.add()
    return receipt


async def test_a_batch_goes_by_user_to_replicas_as_one_chunk_each_keeping_each_users_order() -> None:
    pool, replicas = make_pool("sticky", "a", "b")
    users = [f"u{i}" for i in range(20)]
    items = [(u, n) for n in range(5) for u in users]
    receipt = new_receipt(len(items))
    pool.queue_batch(items, [u for u, _ in items], receipt)
    await asyncio.wait_for(receipt, 1)
    assert receipt.failures == 0 and all(r.got for r in replicas.values())
    for replica in replicas.values():
        for user in {u for u, _ in replica.got}:
            assert [n for u, n in replica.got if u == user] == list(range(5))
    homes = {u: name for name, r in replicas.items() for u, _ in r.got}
    assert len(homes) == 20, "each user went to one replica"
    await pool.close()


async def test_round_robin_cuts_a_batch_into_equal_runs() -> None:
    pool, replicas = make_pool("round_robin", "a", "b", "c")
    receipt = new_receipt(30)
    pool.queue_batch(list(range(30)), None, receipt)
    await asyncio.wait_for(receipt, 1)
    assert sorted(len(r.got) for r in replicas.values()) == [10, 10, 10]
    assert sorted(i for r in replicas.values() for i in r.got) == list(range(30))
    await pool.close()


async def test_a_dead_replicas_part_of_a_batch_goes_to_the_others_and_the_receipt_has_no_failure() -> None:
    told: list[str] = []
    pool, replicas = make_pool("sticky", "a", "b", on_replica_dead=lambda e, r, exc: told.append(r))
    replicas["a"].dead = True
    users = [f"u{i}" for i in range(30)]
    items = [(u, n) for n in range(3) for u in users]
    receipt = new_receipt(len(items))
    pool.queue_batch(items, [u for u, _ in items], receipt)
    await asyncio.wait_for(receipt, 2)
    assert told == ["a"] and receipt.failures == 0
    assert sorted(replicas["b"].got) == sorted(items)
    for user in users:
        assert [n for u, n in replicas["b"].got if u == user] == [0, 1, 2], "redelivered in order"
    await pool.close()


async def test_a_batch_with_no_replica_left_fails_in_its_receipt() -> None:
    pool, replicas = make_pool("round_robin", "a")
    replicas["a"].dead = True
    first = new_receipt(2)
    pool.queue_batch(["x", "y"], None, first)
    await asyncio.wait_for(first, 1)
    second = new_receipt(1)
    pool.queue_batch(["z"], None, second)
    assert second.done and "no replicas" in str(second.failure(0))
    assert all("a died" in str(first.failure(i)) or "no replicas" in str(first.failure(i)) for i in range(2))
    await pool.close()
