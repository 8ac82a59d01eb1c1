"""SenderOrder: batches of one sender are admitted in sequence order (no Ray)."""

from __future__ import annotations

import asyncio

from actors.ordering import SenderOrder


async def _run(order: SenderOrder, log: list[int], key: tuple[str, int, int] | None, label: int) -> None:
    async with order.turn(key):
        log.append(label)
        await asyncio.sleep(0)


async def test_batches_arriving_out_of_order_are_handled_in_sequence() -> None:
    order, log = SenderOrder(), []
    tasks = [asyncio.ensure_future(_run(order, log, ("s", seq, 0), seq)) for seq in (2, 0, 3, 1)]
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert log == [0, 1, 2, 3]


async def test_senders_do_not_wait_for_each_other() -> None:
    order, log = SenderOrder(gap_timeout=5), []
    blocked = asyncio.ensure_future(_run(order, log, ("a", 1, 0), 1))  # waits for a's batch 0
    await asyncio.wait_for(_run(order, log, ("b", 0, 0), 100), 1)
    assert log == [100] and not blocked.done()
    await _run(order, log, ("a", 0, 0), 0)
    await asyncio.wait_for(blocked, 1)
    assert log == [100, 0, 1]


async def test_the_floor_tells_a_new_receiver_where_the_sequence_stands() -> None:
    order, log = SenderOrder(gap_timeout=5), []
    await asyncio.wait_for(_run(order, log, ("s", 500, 500), 500), 1)
    assert log == [500]


async def test_a_batch_that_never_comes_delays_the_next_only_until_the_gap_timeout() -> None:
    order, log = SenderOrder(gap_timeout=0.05), []
    await asyncio.wait_for(_run(order, log, ("s", 0, 0), 0), 1)
    await asyncio.wait_for(_run(order, log, ("s", 2, 0), 2), 1)
    assert log == [0, 2] and order.gaps_skipped == 1


async def test_a_redelivered_old_batch_goes_at_once_and_unnumbered_batches_are_not_held() -> None:
    order, log = SenderOrder(gap_timeout=5), []
    for seq in (0, 1):
        await _run(order, log, ("s", seq, 0), seq)
    await asyncio.wait_for(_run(order, log, ("s", 0, 0), 0), 1)
    await asyncio.wait_for(_run(order, log, None, -1), 1)
    assert log == [0, 1, 0, -1]


def test_seen_ids_forget_the_oldest_beyond_the_window() -> None:
    from actors.ordering import SeenIds

    seen = SeenIds(window=3)
    for key in "abcd":
        seen.add(key)
    assert "a" not in seen and all(k in seen for k in "bcd") and len(seen) == 3


def test_seen_ids_take_a_batch_at_once_and_say_whether_any_was_seen() -> None:
    from actors.ordering import SeenIds

    seen = SeenIds(window=4)
    seen.add_many(["a", "b", "c"])
    assert seen.any_of(["x", "c"]) and not seen.any_of(["x", "y"])
    seen.add_many(["d", "e", "f"])
    assert not seen.any_of(["a", "b"]) and all(k in seen for k in "cdef") and len(seen) == 4
