"""BatchSender: adaptive batching, backpressure, confirmation and retries (no Ray)."""

from __future__ import annotations

import asyncio

import pytest

from actors.loadgen import LoadTransportConfig, build_templates, stamped
from actors.sender import BatchSender, Chunk, EndpointRejected, SenderOptions
from actors.wire import encode_batch, encode_item
from ray_dispatch.core.batching import RAY_INLINE_LIMIT, RAY_SYSTEM_CONFIG
from ray_dispatch.core.errors import DeliveryError
from ray_dispatch.core.message import message_from_dict
from ray_dispatch.core.receipts import BatchReceipt


class Receiver:
    """A fake destination: records batches; can be held, fail, or refuse items."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.errors: list[BaseException] = []
        self.refuse: set[int] = set()

    async def call(self, batch: list[int], *order: object) -> list[tuple[int, str]]:
        self.batches.append(list(batch))
        await self.gate.wait()
        if self.errors:
            raise self.errors.pop(0)
        return [(i, "no thanks") for i, item in enumerate(batch) if item in self.refuse]


async def test_sends_at_once_when_idle_and_coalesces_while_a_call_is_in_flight() -> None:
    rx = Receiver()
    rx.gate.clear()
    sender = BatchSender("app", rx.call, SenderOptions(max_in_flight=1, max_wait=0))
    futures = [await sender.send(0)]
    await asyncio.sleep(0)
    futures += [await sender.send(i) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    assert rx.batches == [[0]]
    rx.gate.set()
    assert all(await asyncio.gather(*futures))
    assert rx.batches == [[0], [1, 2, 3, 4, 5]]
    await sender.close()


async def test_batches_never_exceed_max_batch_and_keep_order() -> None:
    rx = Receiver()
    sender = BatchSender("app", rx.call, SenderOptions(max_batch=3, max_in_flight=1))
    futures = [await sender.send(i) for i in range(10)]
    await asyncio.gather(*futures)
    assert all(len(b) <= 3 for b in rx.batches)
    assert [i for b in rx.batches for i in b] == list(range(10))
    await sender.close()


async def test_max_wait_bounds_how_long_a_message_waits_for_coalescing() -> None:
    rx = Receiver()
    rx.gate.clear()
    sender = BatchSender("app", rx.call, SenderOptions(max_in_flight=2, max_wait=0.02, max_batch=100))
    await sender.send(0)
    await asyncio.sleep(0)
    await sender.send(1)
    await asyncio.sleep(0.1)
    assert rx.batches == [[0], [1]], "the second message went out after max_wait although a call was in flight"
    rx.gate.set()
    assert await sender.drain(1)
    await sender.close()


async def test_send_blocks_when_the_queue_is_full() -> None:
    rx = Receiver()
    rx.gate.clear()
    sender = BatchSender("app", rx.call, SenderOptions(max_in_flight=1, max_queued=2, max_batch=1))
    for i in range(3):  # one in flight, two queued
        await sender.send(i)
        await asyncio.sleep(0)
    blocked = asyncio.ensure_future(sender.send(99))
    await asyncio.sleep(0.02)
    assert not blocked.done()
    rx.gate.set()
    await asyncio.wait_for(blocked, 1)
    assert await sender.drain(1)
    assert [i for b in rx.batches for i in b] == [0, 1, 2, 99]
    await sender.close()


async def test_transient_errors_are_retried_with_backoff_then_confirmed() -> None:
    rx = Receiver()
    rx.errors = [ConnectionError("blip"), ConnectionError("blip")]
    sender = BatchSender(
        "app", rx.call, SenderOptions(retry={"initial_delay": 0.001}), classify=lambda exc: "transient"
    )
    future = await sender.send("m")
    assert await asyncio.wait_for(future, 1) is True
    assert rx.batches == [["m"], ["m"], ["m"]]
    assert sender.retries == 2
    await sender.close()


async def test_retries_are_bounded_and_then_the_item_fails() -> None:
    rx = Receiver()
    rx.errors = [ConnectionError("down")] * 10
    sender = BatchSender(
        "app",
        rx.call,
        SenderOptions(retry={"initial_delay": 0.001, "max_attempts": 3}),
        classify=lambda exc: "transient",
    )
    future = await sender.send("m")
    with pytest.raises(DeliveryError, match="after 3 attempt"):
        await asyncio.wait_for(future, 1)
    assert len(rx.batches) == 3
    await sender.close()


async def test_permanent_errors_fail_at_once() -> None:
    rx = Receiver()
    rx.errors = [ValueError("bug in receiver")]
    sender = BatchSender("app", rx.call)
    future = await sender.send("m")
    with pytest.raises(DeliveryError, match="bug in receiver"):
        await asyncio.wait_for(future, 1)
    assert len(rx.batches) == 1
    await sender.close()


async def test_refused_items_fail_alone() -> None:
    rx = Receiver()
    rx.refuse = {2}
    sender = BatchSender("app", rx.call)
    futures = [await sender.send(i) for i in range(4)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert [isinstance(r, EndpointRejected) for r in results] == [False, False, True, False]
    assert "no thanks" in str(results[2])
    await sender.close()


async def test_a_dead_destination_hands_its_unconfirmed_items_to_on_dead() -> None:
    rx = Receiver()
    rx.errors = [RuntimeError("actor died")]
    handed: list[object] = []

    async def on_dead(batch: list, exc: BaseException) -> None:
        handed.extend(item for chunk in batch for item in chunk.items)
        for chunk in batch:
            chunk.receipt.set_result("elsewhere")

    sender = BatchSender("app", rx.call, classify=lambda exc: "dead", on_dead=on_dead)
    future = await sender.send("m")
    assert await asyncio.wait_for(future, 1) == "elsewhere"
    assert handed == ["m"] and sender.dead
    with pytest.raises(DeliveryError, match="dead"):
        await sender.send("late")
    await sender.close()


async def test_close_fails_what_is_still_queued() -> None:
    rx = Receiver()
    rx.gate.clear()
    sender = BatchSender("app", rx.call, SenderOptions(max_in_flight=1))
    in_flight = await sender.send(0)
    await asyncio.sleep(0)
    queued = await sender.send(1)
    await sender.close()
    for future in (in_flight, queued):
        with pytest.raises(DeliveryError, match="closed"):
            await future


async def test_a_destination_unreachable_past_max_attempts_is_handed_over_when_possible() -> None:
    rx = Receiver()
    rx.errors = [ConnectionError("restarting")] * 10
    handed: list[object] = []

    async def on_dead(batch: list, exc: BaseException) -> None:
        handed.extend(item for chunk in batch for item in chunk.items)
        for chunk in batch:
            chunk.receipt.set_result("elsewhere")

    sender = BatchSender(
        "app",
        rx.call,
        SenderOptions(retry={"initial_delay": 0.001, "max_attempts": 3}),
        classify=lambda exc: "transient",
        on_dead=on_dead,
    )
    future = await sender.send("m")
    assert await asyncio.wait_for(future, 1) == "elsewhere"
    assert handed == ["m"] and len(rx.batches) == 3
    await sender.close()


def test_a_partial_retry_block_keeps_the_senders_other_defaults() -> None:
    retry = SenderOptions(retry={"max_attempts": 3}).retry
    assert (retry.max_attempts, retry.initial_delay, retry.max_delay, retry.factor, retry.jitter) == (3, 0.05, 2, 2, 0)


def test_the_old_flat_batching_retry_keys_still_work_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="batching: 'backoff' is deprecated; write 'retry: {initial_delay: 0.1}'"):
        options = SenderOptions.model_validate({"max_attempts": 4, "backoff": 0.1, "backoff_max": 1.5})
    assert options.retry == SenderOptions(retry={"max_attempts": 4, "initial_delay": 0.1, "max_delay": 1.5}).retry


async def test_a_chunk_is_confirmed_through_one_receipt_across_calls_with_its_refusals() -> None:
    rx = Receiver()
    rx.refuse = {"c3"}
    sender = BatchSender("app", rx.call, SenderOptions(max_batch=4, max_in_flight=1))
    receipt = BatchReceipt()
    slots = [receipt.add() for _ in range(10)]
    sender.enqueue(Chunk([f"c{i}" for i in range(10)], None, receipt, range(10), 0.0))
    await asyncio.wait_for(receipt, 1)
    assert rx.batches == [["c0", "c1", "c2", "c3"], ["c4", "c5", "c6", "c7"], ["c8", "c9"]]
    assert [receipt.failure(s.index) is not None for s in slots] == [i == 3 for i in range(10)]
    assert "'app' refused it: no thanks" in str(receipt.failure(3))
    with pytest.raises(EndpointRejected):
        await slots[3]
    assert sender.pending == 0
    await sender.close()


async def test_chunks_and_lone_items_share_calls_in_their_order() -> None:
    rx = Receiver()
    rx.gate.clear()
    sender = BatchSender("app", rx.call, SenderOptions(max_in_flight=1, max_wait=0))
    first = await sender.send("a")
    await asyncio.sleep(0)
    receipt = BatchReceipt()
    for _ in range(3):
        receipt.add()
    sender.enqueue(Chunk(["b", "c", "d"], None, receipt, range(3), 0.0))
    last = await sender.send("e")
    rx.gate.set()
    await asyncio.wait_for(asyncio.gather(first, last, receipt), 1)
    assert rx.batches == [["a"], ["b", "c", "d", "e"]] and receipt.failures == 0
    await sender.close()


async def test_a_chunk_fills_the_queue_and_further_sends_wait() -> None:
    rx = Receiver()
    rx.gate.clear()
    sender = BatchSender("app", rx.call, SenderOptions(max_in_flight=1, max_queued=3, max_batch=2))
    receipt = BatchReceipt()
    for _ in range(6):
        receipt.add()
    sender.enqueue(Chunk(list(range(6)), None, receipt, range(6), 0.0))
    await asyncio.sleep(0.01)
    blocked = asyncio.ensure_future(sender.send(99))
    await asyncio.sleep(0.02)
    assert not blocked.done(), "4 items were still queued, more than max_queued"
    rx.gate.set()
    await asyncio.wait_for(blocked, 1)
    assert await sender.drain(1) and receipt.done
    assert [i for b in rx.batches for i in b] == [0, 1, 2, 3, 4, 5, 99]
    await sender.close()


async def test_a_batch_stops_at_max_batch_bytes_and_an_oversized_item_goes_alone() -> None:
    rx = Receiver()
    rx.gate.clear()
    sender = BatchSender("app", rx.call, SenderOptions(max_in_flight=1, max_wait=0, max_batch_bytes=10))
    first = await sender.send(b"0000")
    await asyncio.sleep(0)
    rest = [await sender.send(item) for item in (b"1111", b"2222", b"3333", b"big-item-of-16-b", b"4444")]
    rx.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 1)
    assert rx.batches == [[b"0000"], [b"1111", b"2222"], [b"3333"], [b"big-item-of-16-b"], [b"4444"]]
    await sender.close()


async def test_a_chunk_is_split_where_its_bytes_stop_fitting() -> None:
    rx = Receiver()
    sender = BatchSender("app", rx.call, SenderOptions(max_in_flight=1, max_batch_bytes=7))
    receipt = BatchReceipt()
    for _ in range(5):
        receipt.add()
    sender.enqueue(Chunk([b"aaa", b"bbb", b"ccc", b"ddd", b"eee"], None, receipt, range(5), 0.0))
    await asyncio.wait_for(receipt, 1)
    assert rx.batches == [[b"aaa", b"bbb"], [b"ccc", b"ddd"], [b"eee"]]
    assert sender.pending == 0 and sender.queued == 0
    await sender.close()


async def test_a_batch_full_by_bytes_goes_at_once_without_waiting_max_wait() -> None:
    rx = Receiver()
    rx.gate.clear()
    sender = BatchSender("app", rx.call, SenderOptions(max_in_flight=2, max_wait=60, max_batch_bytes=8))
    await sender.send(b"0000")
    await asyncio.sleep(0)
    await sender.send(b"1111")
    await sender.send(b"2222")
    for _ in range(10):
        await asyncio.sleep(0)
    assert rx.batches == [[b"0000"], [b"1111", b"2222"]], "8 bytes were queued: a full batch by max_batch_bytes"
    rx.gate.set()
    assert await sender.drain(1)
    await sender.close()


async def test_calls_in_flight_carry_at_most_max_in_flight_items_so_saturation_makes_fewer_larger_calls() -> None:
    rx = Receiver()
    rx.gate.clear()
    options = SenderOptions(max_in_flight=4, max_in_flight_items=10, max_batch=6, max_wait=0)
    sender = BatchSender("app", rx.call, options)
    first = await sender.send(-1)  # nothing in flight: goes at once, alone
    await asyncio.sleep(0)
    receipt = BatchReceipt()
    for _ in range(20):
        receipt.add()
    sender.enqueue(Chunk(list(range(20)), None, receipt, range(20), 0.0))
    for _ in range(10):
        await asyncio.sleep(0)
    assert rx.batches == [[-1], [0, 1, 2, 3, 4, 5], [6, 7, 8]], "10 items in flight, in 3 of the 4 calls allowed"
    assert sender.in_flight == 3 and sender.queued == 11
    rx.gate.set()
    await asyncio.wait_for(asyncio.gather(first, receipt), 1)
    assert [i for batch in rx.batches[1:] for i in batch] == list(range(20))
    assert all(len(batch) <= 6 for batch in rx.batches) and sender.pending == 0
    await sender.close()


def test_by_default_a_batch_of_4000_sms_fits_in_max_batch_bytes_and_its_blob_stays_inline() -> None:
    """4000 SMS-sized messages (~182 bytes each) go in one call, and that call's blob is under Ray's inline limit."""
    templates = build_templates("sms", LoadTransportConfig())
    options = SenderOptions(max_batch=4000)
    items = [
        encode_item("inbound", message_from_dict(stamped(templates[i % len(templates)], f"sms-{i:06d}")))
        for i in range(options.max_batch)
    ]
    chunk = Chunk(items, None, BatchReceipt(), range(len(items)), 0.0)
    assert chunk.fitting(options.max_batch, options.max_batch_bytes) == options.max_batch
    assert len(encode_batch(items)) <= options.max_batch_bytes + 5 < RAY_INLINE_LIMIT
    assert RAY_SYSTEM_CONFIG == {"max_direct_call_object_size": RAY_INLINE_LIMIT}
