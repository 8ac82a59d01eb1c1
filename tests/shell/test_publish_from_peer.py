"""Messages a peer sends that cannot be passed on become failure records, not log lines (no Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.builtin import MemoryTransport
from ray_dispatch.core.message import Message
from ray_dispatch.core.stores.failures import Direction


class RecordingLink:
    """A DispatcherLink that confirms everything at once and remembers it."""

    def __init__(self) -> None:
        self.sent: list[tuple[Direction, Message]] = []

    async def send(self, direction: Direction, message: Message) -> asyncio.Future[Any]:
        self.sent.append((direction, message))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(True)
        return future

    async def drain(self, timeout: float | None = None) -> bool:
        return True

    async def close(self) -> None:
        return None


async def test_an_invalid_message_from_the_peer_is_kept_as_an_undeliverable_record() -> None:
    transport = MemoryTransport("sms")
    link = RecordingLink()
    transport.use_link(link)
    assert await transport.publish_from_peer(from_addr="+2782", to_addr=12345, content="bad") is None
    published = await transport.publish_from_peer(from_addr="+2782", to_addr="12345", content="good")
    assert published is not None and [m.content for _, m in link.sent] == ["good"]
    [record] = await transport.undeliverable()
    assert record["stage"] == "validate" and "to_addr" in record["reason"]
    assert record["message"]["content"] == "bad"


async def test_a_message_that_cannot_be_handed_over_is_kept_too() -> None:
    transport = MemoryTransport("sms")  # never attached to a dispatcher
    assert await transport.publish_from_peer(from_addr="+2782", to_addr="12345", content="hi") is None
    [record] = await transport.undeliverable()
    assert record["stage"] == "handoff" and "not attached" in record["reason"]


async def test_memory_transport_takes_raw_peer_input_like_a_real_transport() -> None:
    transport = MemoryTransport("sms")
    link = RecordingLink()
    transport.use_link(link)
    assert await transport.inject_from_peer(from_addr="+2782", to_addr=["not", "an", "address"]) is None
    good = await transport.inject_from_peer(from_addr="+2782", to_addr="12345", content="fine")
    assert good is not None and [m.message_id for _, m in link.sent] == [good["message_id"]]
    [record] = await transport.undeliverable()
    assert record["stage"] == "validate" and "to_addr" in record["reason"] and record["endpoint"] == "sms"
