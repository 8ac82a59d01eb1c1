"""Replaying a delivery failure resends to that destination only, not to the whole fan-out."""

from __future__ import annotations

from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.message import Message
from ray_dispatch.core.stores.failures import Direction
from ray_dispatch.testing import make_inbound

CONFIG = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app1", "app2", "app3"],
    "route_mappings": {"sms": ["app1", "app2"]},
}


class FlakyOutbox:
    """Refuses deliveries to the endpoints in ``down``; records the rest."""

    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.delivered: list[tuple[str, str]] = []

    async def deliver(self, direction: Direction, endpoint: str, message: Message) -> None:
        if endpoint in self.down:
            raise ConnectionError(f"{endpoint} is down")
        self.delivered.append((endpoint, message["message_id"]))


async def test_a_delivery_failure_is_replayed_to_its_destination_only() -> None:
    outbox = FlakyOutbox(down={"app2"})
    dispatcher = Dispatcher(CONFIG, outbox)
    await dispatcher.start()
    msg = make_inbound("hi", transport_name="sms")
    outcome = await dispatcher.dispatch_inbound_message(msg)
    [failure] = outcome.failures
    assert (failure.stage, failure.destination) == ("deliver", "app2")
    assert outbox.delivered == [("app1", msg.message_id)]

    outbox.down.clear()
    replayed = await dispatcher.replay_failure(failure.failure_id)
    assert replayed.destinations == ["app2"] and not replayed.failures
    assert outbox.delivered == [("app1", msg.message_id), ("app2", msg.message_id)]
    assert await dispatcher.failures.count() == 0


async def test_a_delivery_failure_can_be_replayed_to_another_endpoint() -> None:
    outbox = FlakyOutbox(down={"app2"})
    dispatcher = Dispatcher(CONFIG, outbox)
    await dispatcher.start()
    [failure] = (await dispatcher.dispatch_inbound_message(make_inbound(transport_name="sms"))).failures
    replayed = await dispatcher.replay_failure(failure.failure_id, "app3")
    assert replayed.destinations == ["app3"]
    assert [e for e, _ in outbox.delivered] == ["app1", "app3"]
