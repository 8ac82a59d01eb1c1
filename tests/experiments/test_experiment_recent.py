"""Explain by id without Ray: the ring of recent outcomes, the shadow store, the re-run and its verdict."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ray_dispatch.core.config import load_config
from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.stores.routing import MemoryStore
from ray_dispatch.testing import MemoryOutbox, make_ack, make_inbound
from ray_dispatch.tools.recent import (
    RecentOutcomes,
    ShadowStore,
    explain_recorded,
)

USER_GROUPS: dict[str, Any] = {
    "router_class": "routers.user_grouping.UserGroupingRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app_a", "app_b"],
    "group_mappings": {"a": "app_a", "b": "app_b"},
}


class Live:
    """A core dispatcher plus the ring the Ray actor keeps next to it."""

    def __init__(self, config: Any, capacity: int = 100) -> None:
        self.core = Dispatcher(config, MemoryOutbox())
        self.recent = RecentOutcomes(capacity)

    async def send(self, direction: Any, message: Any, endpoint: str, trace: bool = False) -> Any:
        if not self.core.started:
            await self.core.start()
        outcome = await self.core.route(direction, message, endpoint, trace=trace)
        self.recent.add(direction, endpoint, message, outcome)  # as on Ray: remembered before it settles
        await self.core.settle(outcome)
        return outcome

    async def explain(self, message_id: str) -> Any:
        recorded = self.recent.get(message_id)
        assert recorded is not None, message_id
        return await explain_recorded(
            self.core.config, recorded, live_store=self.core.store, deployment="d", dispatcher=0
        )


# -- the ring ---------------------------------------------------------------------------


async def test_ring_remembers_destinations_failures_and_drops_by_id(simple_config):
    live = Live(simple_config)
    fanned = make_inbound("hi", transport_name="xmpp")
    lost = make_inbound("?", transport_name="ussd")
    await live.send("inbound", fanned, "xmpp")
    await live.send("inbound", lost, "ussd")
    await live.send("inbound", {"message_type": "user_message", "message_id": "junk-1"}, "sms")
    fan = live.recent.get(fanned.message_id)
    assert fan is not None and fan.destinations == ["inbound:app1", "inbound:app2"] and fan.failures == []
    assert fan.trace is None and fan.endpoint == "xmpp" and fan.direction == "inbound"
    failed = live.recent.get(lost.message_id)
    assert failed is not None and failed.destinations == []
    assert [f["stage"] for f in failed.failures] == ["route"] and "ussd" in failed.failures[0]["reason"]
    junk = live.recent.get("junk-1")  # an invalid payload is remembered by its id too
    assert junk is not None and junk.failures[0]["stage"] == "validate" and isinstance(junk.message, dict)
    assert live.recent.get("never-seen") is None
    assert live.recent.ids() == [fanned.message_id, lost.message_id, "junk-1"]


async def test_ring_keeps_only_the_last_capacity_and_zero_keeps_none(simple_config):
    live = Live(simple_config, capacity=3)
    sent = [make_inbound(f"m{i}", transport_name="sms") for i in range(5)]
    for message in sent:
        await live.send("inbound", message, "sms")
    assert live.recent.ids() == [m.message_id for m in sent[2:]] and len(live.recent) == 3
    assert sent[1].message_id not in live.recent and sent[4].message_id in live.recent
    error = str(live.recent.not_found(sent[0].message_id).args[0])
    assert sent[0].message_id in error and "recent_outcomes: 3" in error

    off = Live(simple_config, capacity=0)
    await off.send("inbound", sent[0], "sms")
    assert len(off.recent) == 0 and off.recent.get(sent[0].message_id) is None
    assert "recent_outcomes: 0" in str(off.recent.not_found("x").args[0])


async def test_ring_answers_with_the_latest_outcome_and_its_late_failures_only(simple_config):
    now = time.time()
    clock = iter([now - 10, now + 10]).__next__  # routed (its delivery fails), replayed
    recent = RecentOutcomes(10, clock=clock)
    outbox = MemoryOutbox()
    core = Dispatcher(simple_config, outbox)
    await core.start()
    message = make_inbound("again", transport_name="sms")
    outbox.refuse("app1", "replica gone")
    first = await core.dispatch("inbound", message, "sms")
    recent.add("inbound", "sms", message, first)
    assert [(f.stage, f.reason) for f in first.failures] == [("deliver", "replica gone")]
    outbox.refuse("app1", None)
    second = await core.dispatch("inbound", message.copy(), "sms")
    recent.add("inbound", "sms", message, second)
    latest = recent.get(message.message_id)
    assert latest is not None and latest.seen_at == now + 10  # the replay's entry, not the first one
    assert latest.failures == [] and latest.delivered == ["inbound:app1"]


async def test_a_delivery_failure_after_routing_is_part_of_what_happened(simple_config):
    live = Live(simple_config)
    live.core.outbox.refuse("app1", ConnectionError("ActorDiedError: gone"))
    message = make_inbound("x", transport_name="sms")
    await live.send("inbound", message, "sms")
    recorded = live.recent.get(message.message_id)
    assert recorded is not None and recorded.destinations == ["inbound:app1"] and recorded.delivered == []
    assert "failed at deliver (to 'app1'): ActorDiedError: gone" in recorded.result
    explained = await live.explain(message.message_id)
    assert explained.agrees  # routing agreed; delivery is not a routing decision
    assert any("delivery failures happen after routing" in n for n in explained.notes)


async def test_a_batch_record_compacted_after_settling_still_explains_each_message(simple_config):
    core = Dispatcher(simple_config, MemoryOutbox())
    await core.start()
    recent = RecentOutcomes(5)
    core.outbox.refuse("app2", "app2 is full")
    first = [make_inbound(f"a{i}", transport_name="xmpp") for i in range(3)]
    outcomes = [await core.route("inbound", m, "xmpp") for m in first]
    record = recent.add_batch("inbound", "xmpp", first, outcomes)
    await core.settle(*outcomes)
    assert record is not None
    record.compact()
    assert record.outcomes is None and record.routes[0] is record.routes[2], "routes alike share one tuple"
    recorded = recent.get(first[1].message_id)
    assert recorded is not None and recorded.destinations == ["inbound:app1", "inbound:app2"]
    assert recorded.delivered == ["inbound:app1"] and "app2 is full" in recorded.result
    second = [make_inbound(f"b{i}", transport_name="sms") for i in range(3)]
    outcomes = [await core.route("inbound", m, "sms") for m in second]
    recent.add_batch("inbound", "sms", second, outcomes)
    await core.settle(*outcomes)
    assert len(recent) == 5 and recent.ids() == [m.message_id for m in first[1:] + second]
    assert first[0].message_id not in recent and recent.get(second[2].message_id).delivered == ["inbound:app1"]
    explained = await explain_recorded(core.config, recent.get(first[2].message_id), live_store=core.store)
    assert explained.agrees and explained.recorded.message.content == "a2"


def test_recent_outcomes_config_key(simple_config, write_yaml):
    assert load_config(simple_config).recent_outcomes == 10_000
    assert load_config({**simple_config, "recent_outcomes": 0}).recent_outcomes == 0
    for bad in (-1, "many", 2.5, True):
        with pytest.raises(ConfigError, match=r"recent_outcomes"):
            load_config({**simple_config, "recent_outcomes": bad})
    path = write_yaml({**simple_config, "recent_outcomes": -5}, "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml: .*recent_outcomes"):
        load_config(path)


# -- the shadow store ----------------------------------------------------------------------


async def test_shadow_store_reads_live_and_never_writes_it():
    live = MemoryStore()
    await live.set("k", "live value")
    await live.set("n", 41)
    shadow = ShadowStore(live)
    assert await shadow.get("k") == "live value" and await shadow.get("absent", "d") == "d"
    await shadow.set("k", "mine")
    assert await shadow.get("k") == "mine" and await live.get("k") == "live value"
    assert await shadow.incr("n") == 42 and await shadow.incr("n") == 43 and await live.get("n") == 41
    assert await shadow.incr("fresh") == 1 and await live.get("fresh") is None
    assert await shadow.delete("k") is True and await shadow.get("k") is None and await live.get("k") == "live value"
    await shadow.close()
    assert await live.get("k") == "live value"  # closing the shadow leaves the live store usable
    assert shadow.live_reads == ["k", "n"]
    assert len(live) == 2


# -- the re-run ------------------------------------------------------------------------------


async def test_rerun_agrees_and_shows_the_router_steps(simple_config):
    live = Live(simple_config)
    message = make_inbound("hi", transport_name="xmpp")
    await live.send("inbound", message, "xmpp")
    explained = await live.explain(message.message_id)
    assert explained.agrees and explained.rerun.destinations == ["inbound:app1", "inbound:app2"]
    assert explained.rerun.steps_of("router") == ["route_mappings['xmpp'] -> ['app1', 'app2']"]
    text = explained.to_text()
    assert "what happened: delivered to inbound:app1, inbound:app2" in text
    assert "the re-run routes it as the dispatcher did." in text and "deployment 'd' (dispatcher 0)" in text
    assert "trace recorded live" not in text  # it was not traced when it was routed
    data = explained.to_dict()
    assert data["message_id"] == message.message_id and data["agrees"] is True
    assert data["recorded"]["destinations"] == ["inbound:app1", "inbound:app2"] and data["recorded"]["trace"] is None
    assert "<table>" in explained._repr_html_()


async def test_the_live_trace_is_kept_when_the_message_was_traced(simple_config):
    live = Live(simple_config)
    message = make_inbound("hi", transport_name="sms")
    await live.send("inbound", message, "sms", trace=True)
    explained = await live.explain(message.message_id)
    assert explained.recorded.trace is not None
    assert [s.kind for s in explained.recorded.trace] == ["router", "publish"]
    assert "trace recorded live:" in explained.to_text()


async def test_the_rerun_starts_from_the_message_as_it_arrived(simple_config):
    live = Live({**simple_config, "max_hops": 1})
    message = make_inbound("hi", transport_name="sms")
    await live.send("inbound", message, "sms")
    assert message.routing_metadata["hops"] == 1  # the dispatcher counted a hop on the live object
    explained = await live.explain(message.message_id)
    assert explained.agrees and explained.rerun.failures == []  # not a routing loop on the re-run


async def test_event_rerun_reads_the_live_return_route(simple_config):
    live = Live(simple_config)
    reply = make_inbound("q", transport_name="sms").reply("a")
    await live.send("outbound", reply, "app2")
    ack = make_ack(reply, transport_name="sms")
    await live.send("event", ack, "sms")
    explained = await live.explain(ack.event_id)
    assert explained.recorded.destinations == ["event:app2"] and explained.agrees
    assert explained.state_reads == [f"return_route:{reply.message_id}"]
    assert any("routing-store key(s) as they are now" in n for n in explained.notes)


async def test_state_dependent_router_reads_the_users_group_and_leaves_the_store_alone():
    live = Live(USER_GROUPS)
    first = make_inbound("1", transport_name="sms", from_addr="+1")
    await live.send("inbound", first, "sms")
    store = live.core.store
    before = (await store.get("user_grouping:user:+1"), await store.get("user_grouping:round-robin"), len(store))  # type: ignore[arg-type]
    explained = await live.explain(first.message_id)
    assert explained.agrees and explained.recorded.destinations == ["inbound:app_a"]
    assert any("is in group 'a' (remembered)" in s for s in explained.rerun.steps_of("router"))
    after = (await store.get("user_grouping:user:+1"), await store.get("user_grouping:round-robin"), len(store))  # type: ignore[arg-type]
    assert after == before == ("a", 1, 2)


async def test_a_different_decision_now_is_reported_as_such():
    live = Live(USER_GROUPS)
    user = make_inbound("1", transport_name="sms", from_addr="+1")
    await live.send("inbound", user, "sms")
    await live.core.store.set("user_grouping:user:+1", "b")  # the user was moved to another group since
    explained = await live.explain(user.message_id)
    assert not explained.agrees
    assert "DIFFERENTLY: live inbound:app_a, re-run inbound:app_b" in explained.to_text()
    assert any("as they are now" in n for n in explained.notes)


async def test_rerun_without_a_live_store_uses_an_empty_one(simple_config):
    live = Live(simple_config)
    reply = make_inbound("q", transport_name="sms").reply("a")
    await live.send("outbound", reply, "app2")
    ack = make_ack(reply, transport_name="sms")
    await live.send("event", ack, "sms")
    recorded = live.recent.get(ack.event_id)
    assert recorded is not None
    explained = await explain_recorded(simple_config, recorded)
    # without the return route, SimpleDispatchRouter sends sms events to app1
    assert not explained.agrees and explained.rerun.destinations == ["event:app1"]
    assert "starts with an empty routing store" in explained.notes[0]
