"""One per-user key picks the sticky replica, for the endpoints' links and the dispatcher's pools (no Ray)."""

from __future__ import annotations

from typing import Any

from actors.endpoint import RayDispatcherLink
from actors.pool import sticky_key
from actors.sender import SenderOptions
from actors.wire import decode_batch
from ray_dispatch.testing import make_ack, make_inbound


class _Receive:
    def __init__(self, got: list[str]) -> None:
        self.got = got

    async def remote(self, source: str, batch: bytes, order: Any) -> list[Any]:
        self.got += [message.get("event_id") or message["message_id"] for _, message in decode_batch(batch)[0]]
        return []


class FakeDispatcher:
    """Records the ids of what it received."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.receive = _Receive(self.got)


def test_the_key_is_the_sender_inbound_the_recipient_outbound_and_the_message_for_events() -> None:
    msg = make_inbound(from_addr="+27820001", to_addr="12345")
    assert sticky_key("inbound", msg) == "+27820001"
    assert sticky_key("outbound", msg) == "12345"
    assert sticky_key("event", make_ack(msg)) == msg.message_id
    assert sticky_key("inbound", make_inbound(from_addr=None)) is None


async def test_a_link_keeps_the_events_about_one_message_on_one_dispatcher() -> None:
    dispatchers = [FakeDispatcher(), FakeDispatcher()]
    link = RayDispatcherLink("sms", dispatchers, SenderOptions(max_in_flight=1, max_wait=0))
    sent = make_inbound(transport_name="sms")
    events = [make_ack(sent, transport_name="sms") for _ in range(6)]
    for event in events:
        await (await link.send("event", event))
    await link.close()
    assert sorted(len(d.got) for d in dispatchers) == [0, 6]  # round robin would have split them 3 / 3
