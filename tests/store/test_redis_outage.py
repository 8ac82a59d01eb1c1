"""Routing through a Redis outage: the circuit breaker, and what the dispatcher does meanwhile.

A real redis-server is killed (SIGKILL, then restarted empty) or frozen
(SIGSTOP, then SIGCONT) in the middle of a stream. The breaker's clock is a
fake one the test moves, so what "fails at once" means is counted (how many
operations waited for Redis), never timed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis_server import RedisServer

from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.errors import StoreUnavailable
from ray_dispatch.core.message import TransportUserMessage
from ray_dispatch.core.stores.breaker import CircuitBreaker
from ray_dispatch.core.stores.redis_failures import RedisFailureStore
from ray_dispatch.core.stores.redis_routing import RedisStore
from ray_dispatch.testing import MemoryOutbox, make_ack, make_inbound
from tests.core.helpers import FakeClock

THRESHOLD = 3
RESET = 30.0  # seconds on the fake clock: no probe happens unless the test moves the clock
BOUND = 120.0  # seconds after which a phase counts as hung (asserted by counting, not by this)


def fake_clocked(store: RedisStore | RedisFailureStore) -> FakeClock:
    """Give ``store``'s breaker a clock the test moves by hand; return the clock."""
    clock = FakeClock()
    store.connection.breaker = CircuitBreaker(store.connection.options.breaker, clock=clock)
    return clock


def redis_options(server: RedisServer, prefix: str) -> dict[str, Any]:
    return {
        "url": server.url,
        "prefix": prefix,
        "operation_timeout": 1.0,
        "breaker": {"failure_threshold": THRESHOLD, "reset_timeout": RESET},
    }


async def wait_until_closed(store: RedisStore, clock: FakeClock, limit: int = 100) -> None:
    """Let probes through (moving the fake clock) until one reaches the restarted server."""
    for _ in range(limit):
        clock.advance(RESET)
        try:
            await store.get("probe")
        except StoreUnavailable:
            await asyncio.sleep(0.1)
            continue
        return
    raise AssertionError(f"the breaker did not close: {store.state()}")


def freeze_or_kill(server: RedisServer, how: str) -> None:
    assert server.pid is not None
    if how == "kill":
        server.kill()
    else:
        os.kill(server.pid, signal.SIGSTOP)


def bring_back(server: RedisServer, how: str) -> None:
    if how == "kill":
        server.restart()  # same port, empty dataset
    else:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGCONT)


# -- the store ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_the_breaker_opens_on_a_dead_server_fails_at_once_and_closes_after_a_probe(
    own_redis: RedisServer, prefix: str, how: str
) -> None:
    store = RedisStore(**redis_options(own_redis, prefix))
    clock = fake_clocked(store)
    try:
        await store.set("k", "v")
        assert store.state()["state"] == "ok"
        freeze_or_kill(own_redis, how)
        try:
            errors = []
            for _ in range(THRESHOLD + 20):
                with pytest.raises(StoreUnavailable) as info:
                    await asyncio.wait_for(store.get("k"), BOUND)
                errors.append(str(info.value))
            waited = [e for e in errors if "circuit open" not in e]
            assert len(waited) == THRESHOLD, waited  # only these waited for Redis; the rest failed at once
            assert errors[-1].startswith(
                f"routing store at {own_redis.url} is unavailable (GET 'k'): circuit open since"
            )
            assert "next probe in 30.0s" in errors[-1]
            state = store.state()
            assert (state["state"], state["url"], state["failures_in_a_row"]) == ("open", own_redis.url, THRESHOLD)
            assert state["next_probe_in"] == RESET and state["last_error"] in waited[-1]
        finally:
            bring_back(own_redis, how)
        await wait_until_closed(store, clock)
        assert store.state()["state"] == "ok"
        assert await store.get("k") == (None if how == "kill" else "v")
    finally:
        await store.close()


async def test_the_failure_store_keeps_records_pending_while_its_breaker_is_open(
    own_redis: RedisServer, prefix: str
) -> None:
    options = redis_options(own_redis, prefix)
    store = RedisFailureStore(**options, retry_interval=0.0)
    fake_clocked(store)
    dispatcher = Dispatcher(
        {
            "router_class": "routers.SimpleDispatchRouter",
            "transport_names": ["sms"],
            "exposed_names": ["app"],
            "route_mappings": {},
        },
        MemoryOutbox(),
        failures=store,
    )
    try:
        own_redis.kill()
        for i in range(THRESHOLD + 5):
            await dispatcher.dispatch_inbound_message(make_inbound(f"unroutable {i}"))
        state = store.state()
        assert (state["state"], state["pending"]) == ("open", THRESHOLD + 5)
    finally:
        await store.close()


# -- the dispatcher ---------------------------------------------------------------


@pytest.fixture
async def routed(own_redis: RedisServer, prefix: str) -> AsyncIterator[tuple[Dispatcher, MemoryOutbox, FakeClock]]:
    """A dispatcher on a Redis routing store: inbound sms -> app1; app2 sends outbound too."""
    outbox = MemoryOutbox()
    config = {
        "router_class": "routers.SimpleDispatchRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app1", "app2"],
        "route_mappings": {"sms": "app1"},  # events without a return route go to app1
        "store": {"class": "ray_dispatch.redis_store.RedisStore", **redis_options(own_redis, prefix)},
    }
    dispatcher = Dispatcher(config, outbox)
    assert isinstance(dispatcher.store, RedisStore)
    clock = fake_clocked(dispatcher.store)
    await dispatcher.start()
    try:
        yield dispatcher, outbox, clock
    finally:
        await dispatcher.stop()


def outbound(i: int) -> TransportUserMessage:
    return make_inbound(f"reply {i}", to_addr="+27831234567", from_addr="100")


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_a_redis_outage_mid_stream_stops_only_what_needs_the_store(
    own_redis: RedisServer, routed: tuple[Dispatcher, MemoryOutbox, FakeClock], how: str
) -> None:
    dispatcher, outbox, clock = routed
    sent_before = [outbound(i) for i in range(100)]
    for msg in sent_before:  # Redis up: app2's messages get their return routes
        await dispatcher.dispatch_outbound_message(msg, "app2")

    stream: list[tuple[str, Any, str]] = []  # 1,000 inbound, with 100 events and 100 outbound among them
    for i in range(1000):
        stream.append(("inbound", make_inbound(f"hello {i}"), "sms"))
        if i % 10 == 5:
            stream.append(("event", make_ack(sent_before[i // 10]), "sms"))
            stream.append(("outbound", outbound(1000 + i), "app2"))

    async def run(items: list[tuple[str, Any, str]]) -> None:
        for direction, msg, endpoint in items:
            await dispatcher.dispatch(direction, msg, endpoint)  # type: ignore[arg-type]

    await run(stream[:300])  # Redis up for the first part of the stream
    freeze_or_kill(own_redis, how)
    try:
        await asyncio.wait_for(run(stream[300:]), BOUND)
    finally:
        bring_back(own_redis, how)

    # Inbound needs no store: all 1,000 were routed.
    assert len(outbox.delivered["inbound", "app1"]) == 1000
    # Outbound was routed too; during the outage without its return route (counted).
    down_outbound = sum(1 for d, _, _ in stream[300:] if d == "outbound")
    assert len(outbox.delivered["outbound", "sms"]) == 100 + 100
    assert dispatcher.stats.return_routes_not_stored == down_outbound
    # Events during the outage need their return route: each became a failure record.
    down_events = [m for d, m, _ in stream[300:] if d == "event"]
    records = await dispatcher.failures.list()
    assert [r.message.event_id for r in records] == [e.event_id for e in down_events]
    assert {(r.direction, r.stage, r.error_type) for r in records} == {("event", "route", "StoreUnavailable")}
    # ...and at once: only THRESHOLD store operations of the outage waited for Redis.
    refused_at_once = [r for r in records if "circuit open since" in r.reason]
    assert len(refused_at_once) >= len(down_events) - THRESHOLD
    before_outage = [m for d, m, _ in stream[:300] if d == "event"]
    assert len(outbox.delivered["event", "app2"]) == len(before_outage)

    # Redis is back: a probe closes the breaker and routing uses the store again.
    await wait_until_closed(dispatcher.store, clock)  # type: ignore[arg-type]
    assert dispatcher.store.state()["state"] == "ok"
    late = outbound(5000)
    await dispatcher.dispatch_outbound_message(late, "app2")
    await dispatcher.dispatch_inbound_event(make_ack(late))
    assert outbox.delivered["event", "app2"][-1]["user_message_id"] == late.message_id
    assert dispatcher.stats.return_routes_not_stored == down_outbound

    # The events' failure records replay: home to app2 if Redis kept the routes, else where the router says.
    home = "app1" if how == "kill" else "app2"
    before = len(outbox.delivered["event", home])
    for record in records:
        outcome = await dispatcher.replay_failure(record.failure_id)
        assert outcome.destinations == [home] and not outcome.failures
    assert len(outbox.delivered["event", home]) == before + len(records)
    assert await dispatcher.failures.count() == 0
