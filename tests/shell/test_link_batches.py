"""An endpoint's link confirms what it publishes per batch, not per message (no Ray cluster).

Publishing without waiting (``reply_to``, ``send_to``, ``publish_*``) adds the
message to the link's open batch, handed over as one chunk with one receipt:
no asyncio future per message. Backpressure, per-user order and the
undeliverable records of messages no dispatcher took still hold.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors import sender as sender_module
from actors.builtin import EchoApplication, MemoryTransport
from actors.endpoint import ApplicationActor
from actors.wire import decode_batch, encode_batch, encode_item
from ray_dispatch.testing import make_inbound
from tests.peers.net import eventually


class _Receive:
    """``handle.receive.remote(...)`` of a fake dispatcher."""

    def __init__(self, dispatcher: HeldDispatcher) -> None:
        self._dispatcher = dispatcher

    async def remote(self, source: str, batch: bytes, order: Any) -> list[tuple[int, str]]:
        return await self._dispatcher.take(batch)


class HeldDispatcher:
    """Records each call's message contents; holds calls while ``held``; refuses contents in ``refuse``."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.refuse: set[str] = set()
        self.open = asyncio.Event()
        self.open.set()
        self.receive = _Receive(self)

    async def take(self, batch: bytes) -> list[tuple[int, str]]:
        await self.open.wait()
        contents = [message["content"] for _, message in decode_batch(batch)[0]]
        self.calls.append(contents)
        return [(index, "refused (test)") for index, content in enumerate(contents) if content in self.refuse]

    @property
    def received(self) -> list[str]:
        return [content for call in self.calls for content in call]


@pytest.fixture
def futures_made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Counts the messages handed to a sender one at a time, each with its own future."""
    made: list[Any] = []
    original = sender_module.BatchSender.send

    async def counting_send(self: Any, item: Any, key: str | None = None) -> asyncio.Future[Any]:
        made.append(item)
        return await original(self, item, key)

    monkeypatch.setattr(sender_module.BatchSender, "send", counting_send)
    return made


async def attached_app(dispatcher: HeldDispatcher, **sender: Any) -> ApplicationActor:
    app = ApplicationActor("app", sender={"max_wait": 0, **sender})
    await app.attach([dispatcher])
    return app


async def test_replies_of_one_batch_go_out_as_one_chunk_in_order_without_a_future_each(
    futures_made: list[Any],
) -> None:
    dispatcher = HeldDispatcher()
    app = await attached_app(dispatcher)
    inbound = [make_inbound(from_addr=f"+2782{index}", content=f"q{index}") for index in range(50)]
    for message in inbound:  # as receive runs the hooks of one batch: no await that suspends in between
        await app.reply_to(message, f"a{message.content[1:]}")
    assert await app._link.drain(10)  # type: ignore[union-attr]
    assert dispatcher.calls == [[f"a{index}" for index in range(50)]]
    assert futures_made == []  # confirmed per batch: no message had its own future
    assert app.counters["outbound_sent"] == 50 and await app.undeliverable() == []
    await app._link.close()  # type: ignore[union-attr]


async def test_a_message_sent_with_wait_keeps_its_place_after_those_published_before() -> None:
    dispatcher = HeldDispatcher()
    sms = MemoryTransport("sms", sender={"max_wait": 0})
    await sms.attach([dispatcher])
    await sms.inject("first", wait=False)
    await sms.inject("second", wait=False)
    await sms.inject("waited", wait=True)  # one user: it must not overtake the open batch
    assert dispatcher.received == ["first", "second", "waited"]
    await sms._link.close()  # type: ignore[union-attr]


async def test_a_publisher_waits_while_the_dispatchers_queue_is_full() -> None:
    dispatcher = HeldDispatcher()
    dispatcher.open.clear()
    app = await attached_app(dispatcher, max_batch=5, max_queued=10, max_in_flight=1)
    published: list[int] = []

    async def publish_all() -> None:
        for index in range(100):
            await app.send_to("+27820001", f"m{index}", "sms")
            published.append(index)

    task = asyncio.get_running_loop().create_task(publish_all())
    await eventually(lambda: dispatcher.open.is_set() or len(published) >= 10)
    for _ in range(50):  # let the publisher run on as far as it can
        await asyncio.sleep(0)
    stuck_at = len(published)
    # at most one call in flight (5), the queue (10, plus one chunk over) and one open batch (5)
    assert not task.done() and stuck_at <= 5 + 10 + 5 + 5
    dispatcher.open.set()
    await asyncio.wait_for(task, 10)
    assert await app._link.drain(10)  # type: ignore[union-attr]
    assert dispatcher.received == [f"m{index}" for index in range(100)]
    await app._link.close()  # type: ignore[union-attr]


async def test_only_the_refused_messages_of_a_batch_become_undeliverable_records() -> None:
    dispatcher = HeldDispatcher()
    dispatcher.refuse = {"b", "d"}
    app = await attached_app(dispatcher)
    for content in "abcde":
        await app.send_to("+27820001", content, "sms")
    assert await app._link.drain(10)  # type: ignore[union-attr]
    assert dispatcher.calls == [list("abcde")]
    records = await app.undeliverable()
    assert [r["message"]["content"] for r in records] == ["b", "d"]
    assert all(r["stage"] == "handoff" and "refused (test)" in r["reason"] for r in records)
    assert app.counters["send_failed"] == 2
    await app._link.close()  # type: ignore[union-attr]


async def test_what_is_still_in_the_open_batch_when_the_link_closes_is_kept_as_undeliverable() -> None:
    dispatcher = HeldDispatcher()
    app = await attached_app(dispatcher)
    await app.send_to("+27820001", "late", "sms")
    await app._link.close()  # type: ignore[union-attr]  # before the loop ran the flush
    [record] = await app.undeliverable()
    assert record["message"]["content"] == "late" and "closed before handing it over" in record["reason"]
    assert dispatcher.calls == []


async def test_a_publisher_cancelled_while_it_waits_for_room_published_nothing_and_loses_nothing_before() -> None:
    dispatcher = HeldDispatcher()
    dispatcher.open.clear()
    app = await attached_app(dispatcher, max_batch=5, max_queued=5, max_in_flight=1)

    async def publish(first: int) -> None:
        for index in range(first, first + 5):  # the fifth hands the batch over (max_batch) itself
            await app.send_to("+27820001", f"m{index}", "sms")

    async def settle() -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    await publish(0)
    await settle()  # m0-m4 in flight (held): the only call allowed
    await publish(5)
    await settle()  # m5-m9 fill the queue
    task = asyncio.get_running_loop().create_task(publish(10))
    await settle()  # m10 waits for room, not yet taken
    assert not task.done() and app.counters["outbound_sent"] == 10
    task.cancel()
    dispatcher.open.set()
    assert await app._link.drain(10)  # type: ignore[union-attr]
    assert dispatcher.received == [f"m{index}" for index in range(10)]  # m10 was never taken: its publisher knows
    assert await app.undeliverable() == []
    await app._link.close()  # type: ignore[union-attr]


async def test_replies_made_while_receiving_a_batch_never_wait_for_room_so_a_full_link_cannot_deadlock() -> None:
    """The replies answer the batch being received: waiting for room there could close a loop of full queues."""
    dispatcher = HeldDispatcher()
    dispatcher.open.clear()
    app = EchoApplication("app", sender={"max_wait": 0, "max_batch": 5, "max_queued": 5, "max_in_flight": 1})
    await app.attach([dispatcher])
    for index in range(10):  # from outside a batch: m0-m4 in flight (held), m5-m9 fill the queue
        await app.send_to("+27820001", f"m{index}", "sms")
    blocked = asyncio.get_running_loop().create_task(app.send_to("+27820001", "m10", "sms"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not blocked.done(), "a message from outside a batch waits for room"

    inbound = [make_inbound(from_addr="+27820002", content=f"q{index}") for index in range(12)]
    refused = await asyncio.wait_for(app.receive("dispatcher", encode_batch_of("inbound", inbound)), 10)
    assert refused == [] and app.counters["outbound_sent"] == 22, "all 12 replies were taken while the link was full"
    dispatcher.open.set()
    await asyncio.wait_for(blocked, 10)
    assert await app._link.drain(10)  # type: ignore[union-attr]
    replies = [f"q{index}" for index in range(12)]
    assert dispatcher.received == [f"m{index}" for index in range(10)] + replies + ["m10"]
    await app._link.close()  # type: ignore[union-attr]


def encode_batch_of(direction: str, messages: list[Any]) -> bytes:
    return encode_batch([encode_item(direction, message) for message in messages])  # type: ignore[arg-type]


async def test_drain_gives_up_at_its_timeout_while_the_batch_waits_for_room_and_drops_nothing() -> None:
    dispatcher = HeldDispatcher()
    dispatcher.open.clear()
    app = await attached_app(dispatcher, max_batch=5, max_queued=5, max_in_flight=1)
    publisher = asyncio.get_running_loop().create_task(_publish_range(app, 0, 12))
    for _ in range(20):  # until m10-m11 wait for room: one call held (m0-m4), the queue full (m5-m9)
        await asyncio.sleep(0)
    assert await asyncio.wait_for(app._link.drain(0.05), 10) is False  # type: ignore[union-attr]
    dispatcher.open.set()
    await asyncio.wait_for(publisher, 10)
    assert await app._link.drain(10)  # type: ignore[union-attr]
    assert dispatcher.received == [f"m{index}" for index in range(12)]
    await app._link.close()  # type: ignore[union-attr]


async def _publish_range(app: ApplicationActor, first: int, end: int) -> None:
    for index in range(first, end):
        await app.send_to("+27820001", f"m{index}", "sms")
