"""Config generations without Ray: the history, the plan of an apply, the successor core, recorded generations."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ray_dispatch import reconfigure
from ray_dispatch.core.config import load_config
from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.generations import GenerationHistory, NoEarlierGeneration, plan_changes
from ray_dispatch.core.harness import MemoryOutbox
from ray_dispatch.core.recent import RecentOutcomes
from ray_dispatch.core.stores.failures import FailureRecord
from ray_dispatch.testing import make_inbound

from .helpers import FakeClock

SIMPLE: dict[str, Any] = {
    "router_class": "routers.simple.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app1"],
    "route_mappings": {"sms": "app1"},
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport"},
        "app1": {"class": "actors.builtin.EchoApplication", "replicas": 2},
    },
}

KEYWORDS: dict[str, Any] = {
    "router_class": "routers.content_keyword.ContentKeywordRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app1", "app2"],
    "keyword_mappings": {"app2": "two"},
    "fallback_application": "app1",
    "transport_mappings": {"12345": "sms"},
    "middleware": [{"logger": "ray_dispatch.middleware.logging.LoggingMiddleware"}],
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport"},
        "app1": {"class": "actors.builtin.EchoApplication", "replicas": 3},
        "app2": {"class": "actors.builtin.EchoApplication"},
    },
}


# -- history ------------------------------------------------------------------------


def test_history_numbers_generations_and_rolls_back_to_the_one_before() -> None:
    history = GenerationHistory(clock=FakeClock())
    with pytest.raises(NoEarlierGeneration, match="no earlier generation"):
        history.rollback_target()
    first = history.record(SIMPLE, source="seed.yaml", note="start")
    second = history.record(KEYWORDS)
    assert (first.number, second.number, history.current) == (1, 2, second)
    assert history.rollback_target() == first
    third = history.record(first.config, note="rollback to 1")
    assert third.number == 3 and history.rollback_target() == second
    assert [s["note"] for s in history.summaries()] == ["start", "apply", "rollback to 1"]
    assert history.summaries()[1]["router_class"] == "routers.content_keyword.ContentKeywordRouter"
    with pytest.raises(ValueError, match="generation 2 is not after the current one"):
        history.record(SIMPLE, number=2)


def test_history_forgets_the_oldest_beyond_keep() -> None:
    history = GenerationHistory(keep=3)
    for _ in range(5):
        history.record(SIMPLE)
    assert [e.number for e in history.entries] == [3, 4, 5]


# -- the plan ------------------------------------------------------------------------


def test_plan_lists_router_middleware_and_endpoint_changes() -> None:
    plan = plan_changes(load_config(SIMPLE), load_config(KEYWORDS), 1, 2)
    assert plan.router == ("routers.simple.SimpleDispatchRouter", "routers.content_keyword.ContentKeywordRouter")
    assert plan.middleware_added == ["logger"]
    assert plan.endpoints_added == {"app2": 1}
    assert plan.endpoints_rescaled == {"app1": (2, 3)}
    assert plan.endpoints_removed == [] and plan.stores_changed == []
    text = plan.to_text()
    assert "generation 1 -> 2" in text and "endpoint added: app2 (1 replica(s))" in text
    back = plan_changes(load_config(KEYWORDS), load_config(SIMPLE), 2, 3)
    assert back.endpoints_removed == ["app2"] and back.middleware_removed == ["logger"]


def test_plan_sees_store_and_router_config_changes_and_nothing_for_the_same_config() -> None:
    same = plan_changes(load_config(SIMPLE), load_config(copy.deepcopy(SIMPLE)), 1, 2)
    assert same.lines() == ["no changes"]
    changed = copy.deepcopy(SIMPLE)
    changed["route_mappings"] = {"sms": ["app1"]}
    changed["store"] = {"class": "ray_dispatch.store.MemoryStore", "max_keys": 10}
    plan = plan_changes(load_config(SIMPLE), load_config(changed), 1, 2)
    assert plan.router is None and plan.router_config_changed
    assert plan.stores_changed == ["store"]


def test_plan_refuses_a_change_of_dispatcher_replicas() -> None:
    more = {**SIMPLE, "dispatcher": {"replicas": 2}}
    with pytest.raises(ConfigError, match=r"dispatcher\.replicas: cannot change on a running deployment \(1 -> 2\)"):
        plan_changes(load_config(SIMPLE), load_config(more), 1, 2)


def test_apply_runs_the_full_preflight_first_and_a_bad_config_changes_nothing() -> None:
    bad = {**KEYWORDS, "keyword_mappings": {"app3": "three"}}

    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"apply touched the deployment ({name}) before its preflight passed")

    with pytest.raises(ConfigError, match="app3"):
        reconfigure.apply(Untouchable(), bad)  # type: ignore[arg-type]


# -- the successor core ------------------------------------------------------------


GROUPS: dict[str, Any] = {
    "router_class": "routers.user_grouping.UserGroupingRouter",
    "transport_names": ["sms"],
    "exposed_names": ["a", "b", "c"],
    "group_mappings": {"g1": "a", "g2": "b"},
}


async def _destinations(dispatcher: Dispatcher, user: str) -> list[str]:
    return (await dispatcher.dispatch_inbound_message(make_inbound("hi", from_addr=user), "sms")).destinations


async def test_successor_keeps_user_groups_when_the_store_is_kept() -> None:
    outbox = MemoryOutbox()
    old = Dispatcher(GROUPS, outbox)
    await old.start()
    users = [f"+2782{i:07d}" for i in range(4)]
    before = {u: await _destinations(old, u) for u in users}
    assert {tuple(d) for d in before.values()} == {("a",), ("b",)}

    # A third group: new users would be spread over three, but known users keep theirs.
    new = old.successor({**GROUPS, "group_mappings": {"g1": "a", "g2": "b", "g3": "c"}}, 2)
    await new.start()
    await old.retire(new)
    assert new.store is old.store and new.stats is old.stats
    after = {u: await _destinations(new, u) for u in users}
    assert after == before
    assert new.stats.received["inbound", "sms"] == 8

    # A new store block: a new store, so the groups start again.
    fresh = new.successor({**GROUPS, "store": {"class": "ray_dispatch.core.stores.routing.MemoryStore"}}, 3)
    assert fresh.store is not new.store
    await new.retire(fresh)


async def test_outcomes_failures_and_recent_outcomes_carry_their_generation() -> None:
    outbox = MemoryOutbox()
    old = Dispatcher(SIMPLE, outbox)
    await old.start()
    recent = RecentOutcomes(10)
    first = make_inbound("one", transport_name="sms")
    routed = await old.dispatch_inbound_message(first, "sms")
    recent.add("inbound", "sms", first, routed)
    new = old.successor({**SIMPLE, "route_mappings": {}}, 7)
    await new.start()
    failed_message = make_inbound("two", transport_name="sms")
    failed = await new.dispatch_inbound_message(failed_message, "sms")
    recent.add("inbound", "sms", failed_message, failed)
    assert (routed.generation, failed.generation) == (1, 7)
    records = await new.failures.list()
    assert [r.generation for r in records] == [7]
    assert FailureRecord.from_dict(records[0].to_dict()).generation == 7
    assert [(r.message_id, r.generation) for r in recent.recorded()] == [
        (first.message_id, 1),
        (failed_message.message_id, 7),
    ]
    assert recent.recorded(1)[0].to_dict()["generation"] == 7


async def test_a_delivery_refused_after_the_switch_is_recorded_with_the_generation_that_routed_it() -> None:
    outbox = MemoryOutbox()
    outbox.refusing["app1"] = RuntimeError("replica gone")
    old = Dispatcher(SIMPLE, outbox)
    await old.start()
    outcome = await old.route("inbound", make_inbound("x", transport_name="sms"), "sms")
    new = old.successor(SIMPLE, 2)
    await new.start()
    await old.retire(new)
    await new.settle(outcome)  # the shell settles after the swap, with the new core
    assert [r.generation for r in await new.failures.list()] == [1]
