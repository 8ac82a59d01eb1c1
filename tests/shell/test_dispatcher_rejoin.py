"""An endpoint's link takes back a dispatcher it gave up on once it answers again (no Ray cluster).

Ray queues calls to an actor it is restarting, so a restart alone does not make
the link give up; a partition does (``ActorUnavailableError`` past the retry
budget). The fake dispatcher below raises Ray's own exceptions to play both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from actors.builtin import MemoryTransport
from actors.wire import decode_batch
from ray_dispatch.core.errors import DeliveryError
from tests.peers.net import eventually

FAST_GIVE_UP = {"max_attempts": 2, "backoff": 0.01, "backoff_max": 0.05}


class _Method:
    """``handle.method.remote(...)`` for a fake actor: returns the coroutine to await."""

    def __init__(self, call: Callable[..., Awaitable[Any]]) -> None:
        self._call = call

    def remote(self, *args: Any) -> Awaitable[Any]:
        return self._call(*args)


class FakeDispatcher:
    """Takes every batch unless partitioned (unavailable) or gone (dead for good); records message ids."""

    def __init__(self) -> None:
        self.partitioned = False
        self.gone = False
        self.received: list[str] = []
        self.receive = _Method(self._receive)
        self.ping = _Method(self._ping)

    def _check(self) -> None:
        if self.gone:
            raise ActorDiedError()
        if self.partitioned:
            raise ActorUnavailableError("partitioned (test)", None)

    async def _receive(self, source: str, batch: bytes, order: Any) -> list[Any]:
        self._check()
        self.received += [message["message_id"] for _, message in decode_batch(batch)[0]]
        return []

    async def _ping(self) -> dict[str, Any]:
        self._check()
        return {}


@pytest.fixture
async def sms_and_dispatcher() -> Any:
    dispatcher = FakeDispatcher()
    sms = MemoryTransport("sms", {"auto_ack": False}, sender=FAST_GIVE_UP)
    await sms.attach([dispatcher])
    try:
        yield sms, dispatcher
    finally:
        assert sms._link is not None
        await sms._link.close()


async def test_after_a_partition_the_dispatcher_is_taken_back_and_gets_what_it_missed(sms_and_dispatcher: Any) -> None:
    sms, dispatcher = sms_and_dispatcher
    before = await sms.inject("before", wait=True)
    dispatcher.partitioned = True
    missed = await sms.inject("during the partition", wait=False)
    await eventually(lambda: sms.counters["send_failed"] == 1)  # past the retry budget: an undeliverable record
    with pytest.raises(DeliveryError, match="no replicas"):
        await sms.inject("while no dispatcher is left", wait=False)
    assert await sms.publish_from_peer(from_addr="+2782", to_addr=12345, content="invalid") is None

    dispatcher.partitioned = False
    await eventually(lambda: sms.counters["dispatcher_rejoined"] == 1)
    await eventually(lambda: missed["message_id"] in dispatcher.received)
    after = await sms.inject("after", wait=True)
    assert dispatcher.received == [before["message_id"], missed["message_id"], after["message_id"]]
    assert sms.counters["undeliverable_resent"] == 1
    assert [r["stage"] for r in await sms.undeliverable()] == ["validate"]  # invalid input stays a record


async def test_a_dispatcher_gone_for_good_is_not_pinged_forever(sms_and_dispatcher: Any) -> None:
    sms, dispatcher = sms_and_dispatcher
    dispatcher.gone = True
    lost = await sms.inject("to nobody", wait=False)
    await eventually(lambda: sms.counters["send_failed"] == 1)
    link = sms._link
    await eventually(lambda: not link._pinging)  # one ping said ActorDiedError: it stopped
    assert sms.counters["dispatcher_rejoined"] == 0
    assert [r["message"]["message_id"] for r in await sms.undeliverable()] == [lost["message_id"]]
