"""Routing loops: a message bouncing transport -> transport is stopped by the hop limit."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from ray_dispatch.core.dispatcher import Dispatcher, DispatchOutcome
from ray_dispatch.core.message import Message
from ray_dispatch.core.stores.failures import Direction
from ray_dispatch.testing import make_inbound


class LoopbackTransports:
    """An outbox whose transports hand every outbound message straight back in as inbound."""

    def __init__(self) -> None:
        self.returned: list[tuple[str, Message]] = []
        self.delivered: list[tuple[Direction, str]] = []

    async def deliver(self, direction: Direction, endpoint: str, message: Message) -> None:
        """Record the delivery; an outbound message comes back from that transport."""
        self.delivered.append((direction, endpoint))
        if direction == "outbound":
            message["transport_name"] = endpoint
            self.returned.append((endpoint, message))


async def run_until_quiet(
    dispatcher: Dispatcher, transports: LoopbackTransports, first: Message
) -> list[DispatchOutcome]:
    """Dispatch ``first`` from ``t1`` and whatever comes back, at most 100 times (a loop must stop sooner)."""
    outcomes = [await dispatcher.dispatch_inbound_message(first, "t1")]
    while transports.returned:
        assert len(outcomes) < 100, "the routing loop was not stopped"
        endpoint, message = transports.returned.pop(0)
        outcomes.append(await dispatcher.dispatch_inbound_message(message, endpoint))
    return outcomes


def loop_config(router: str, max_hops: int | None, **keys: Any) -> dict[str, Any]:
    config = {"router_class": router, "transport_names": ["t1", "t2"], **keys}
    return config if max_hops is None else {**config, "max_hops": max_hops}


ROUTERS = [pytest.param("core_fuzz.bounce_router.BounceRouter", {}, id="test-bounce-router")]
if importlib.util.find_spec("routers.transport_to_transport") is not None:
    ROUTERS.append(
        pytest.param(
            "routers.transport_to_transport.TransportToTransportRouter",
            {"route_mappings": {"t1": "t2", "t2": "t1"}},
            id="TransportToTransportRouter",
        )
    )


@pytest.mark.parametrize(("router", "keys"), ROUTERS)
@pytest.mark.parametrize("max_hops", [1, 3, None])
async def test_transport_to_transport_cycle_is_stopped_by_hop_count(
    router: str, keys: dict[str, Any], max_hops: int | None
) -> None:
    transports = LoopbackTransports()
    dispatcher = Dispatcher(loop_config(router, max_hops, **keys), transports)
    limit = dispatcher.config.max_hops  # 10 by default
    await dispatcher.start()
    try:
        msg = make_inbound("ping", transport_name="t1")
        outcomes = await run_until_quiet(dispatcher, transports, msg)
    finally:
        await dispatcher.stop()

    assert len(outcomes) == limit + 1  # the message passed the dispatcher `limit` times, then was stopped
    assert [o.destinations for o in outcomes[:-1]] == [["t2"] if i % 2 == 0 else ["t1"] for i in range(limit)]
    assert all(o.failures == [] for o in outcomes[:-1])
    (failure,) = outcomes[-1].failures
    assert failure.error_type == "RoutingLoop"
    assert f"max_hops {limit}" in failure.reason
    assert failure.message.message_id == msg.message_id
    assert len(await dispatcher.failures.list()) == 1
    assert len(transports.delivered) == limit


async def test_unrelated_messages_are_not_counted_as_a_loop() -> None:
    transports = LoopbackTransports()
    config = loop_config("core_fuzz.bounce_router.BounceRouter", 3)
    dispatcher = Dispatcher(config, transports)
    await dispatcher.start()
    try:
        for i in range(20):  # many fresh messages through the same path: each starts at hop 1
            outcome = await dispatcher.dispatch_inbound_message(make_inbound(f"m{i}", transport_name="t1"), "t1")
            assert outcome.destinations == ["t2"]
        assert await dispatcher.failures.count() == 0
    finally:
        await dispatcher.stop()
