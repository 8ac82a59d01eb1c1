"""Replicas on Ray: each pick policy, fan-out, scaling while messages flow, spawning from code.

One deployment serves the whole module; every test uses its own transport /
application pair, so the tests do not see each other's messages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import ray

import ray_dispatch
from actors.builtin import EchoApplication
from ray_dispatch.api import Deployment
from tests.helpers_apps import GatedSink, NotAnApplication, TaggingApp
from tests.waiting import wait_for

pytestmark = pytest.mark.ray

SINK = {"class": "actors.builtin.EchoApplication", "config": {"reply": False}}

CONFIG: dict[str, Any] = {
    "router_class": "routers.simple.SimpleDispatchRouter",
    "transport_names": ["rr_in", "sticky_in", "ll_in", "fan_in", "scale_in", "code_in"],
    "exposed_names": ["rr_app", "sticky_app", "ll_app", "fan_a", "fan_b", "scale_app", "code_app"],
    "route_mappings": {
        "rr_in": "rr_app",
        "sticky_in": "sticky_app",
        "ll_in": "ll_app",
        "fan_in": ["fan_a", "fan_b"],
        "scale_in": "scale_app",
        "code_in": "code_app",
    },
    # Transports without a class get no actors: these tests inject through the
    # dispatcher (Deployment.send), except where a real transport is needed.
    "endpoints": {
        "rr_app": {**SINK, "replicas": 3},
        "sticky_app": {**SINK, "replicas": 3, "policy": "sticky"},
        "ll_app": {"policy": "least_loaded", "replicas": 0},
        "fan_a": SINK,
        "fan_b": {**SINK, "replicas": 2},
        "scale_in": {"class": "actors.builtin.MemoryTransport", "config": {"auto_ack": False}},
        "scale_app": {"class": "tests.helpers_apps.TaggingApp", "config": {"tag": "scale"}},
        "code_in": {"class": "actors.builtin.MemoryTransport", "config": {"auto_ack": False}},
    },
}


@pytest.fixture(scope="module")
def dep(ray_session: None) -> Iterator[Deployment]:
    deployment = ray_dispatch.deploy(CONFIG, name="replicas-test", health_interval=0.5)
    try:
        yield deployment
    finally:
        deployment.shutdown()


def received_by_replica(dep: Deployment, endpoint: str) -> dict[str, list[dict[str, Any]]]:
    """User messages each replica of an EchoApplication endpoint received (and forgets them)."""
    return {
        rid: ray.get(dep.endpoint(endpoint, rid).received.remote(clear=True))["messages"]
        for rid in dep.replica_ids(endpoint)
    }


def test_round_robin_spreads_messages_evenly(dep: Deployment) -> None:
    ids = [dep.send("rr_in", f"m{i}", from_addr="+2782000000")["message_id"] for i in range(30)]
    got = received_by_replica(dep, "rr_app")
    assert sorted(got) == ["0", "1", "2"]
    assert [len(messages) for messages in got.values()] == [10, 10, 10]
    assert sorted(m["message_id"] for ms in got.values() for m in ms) == sorted(ids)


def _users_by_replica(got: dict[str, list[dict[str, Any]]]) -> dict[str, set[str]]:
    """Which replicas each user's messages reached."""
    seen: dict[str, set[str]] = {}
    for rid, messages in got.items():
        for m in messages:
            seen.setdefault(m["from_addr"], set()).add(rid)
    return seen


def test_sticky_keeps_each_user_on_one_replica_and_removal_moves_only_its_users(dep: Deployment) -> None:
    users = [f"+2783000{i:04d}" for i in range(12)]
    for round_ in range(8):
        for user in users:
            dep.send("sticky_in", f"{user} #{round_}", from_addr=user)
    before = _users_by_replica(received_by_replica(dep, "sticky_app"))
    assert sorted(before) == users
    assert all(len(replicas) == 1 for replicas in before.values()), before
    home = {user: next(iter(replicas)) for user, replicas in before.items()}
    assert set(home.values()) == {"0", "1", "2"}, "12 users should land on all three replicas"

    assert dep.scale("sticky_app", 2) == ["0", "1"]  # removes the newest replica, "2"
    for round_ in range(4):
        for user in users:
            dep.send("sticky_in", f"{user} again #{round_}", from_addr=user)
    after = _users_by_replica(received_by_replica(dep, "sticky_app"))
    assert all(len(replicas) == 1 for replicas in after.values()), after
    moved = {user for user in users if after[user] != {home[user]}}
    assert moved == {user for user in users if home[user] == "2"}
    assert dep.failures(endpoint="sticky_in") == []


def test_least_loaded_sends_to_idle_replicas_while_one_is_busy(dep: Deployment) -> None:
    assert dep.spawn("ll_app", GatedSink, 1, config={"reply": False}) == ["0"]
    assert dep.spawn("ll_app", EchoApplication, 2, config={"reply": False}) == ["1", "2"]
    # All idle: the first message goes to the first replica, which holds it until released: busy.
    busy = dep.dispatchers[0].inject.remote("inbound", "ll_in", _inbound("ll_in", "slow one"))

    def held() -> bool:
        return bool(ray.get(dep.dispatchers[0].status.remote())["endpoints"]["ll_app"]["0"]["pending"])

    assert wait_for(held, 60), "the first message never reached the busy replica"
    quick = [dep.send("ll_in", f"quick {i}")["message_id"] for i in range(12)]
    fast = [
        m["message_id"]
        for rid in ("1", "2")
        for m in ray.get(dep.endpoint("ll_app", rid).received.remote())["messages"]
    ]
    assert sorted(fast) == sorted(quick)
    ray.get(dep.endpoint("ll_app", "0").release.remote(), timeout=60)
    assert ray.get(busy, timeout=60)["destinations"] == ["inbound:ll_app"]
    assert [m["content"] for m in _messages(dep, "ll_app", "0")] == ["slow one"]


def _messages(dep: Deployment, endpoint: str, replica: str) -> list[dict[str, Any]]:
    return ray.get(dep.endpoint(endpoint, replica).received.remote())["messages"]


def _inbound(transport: str, content: str) -> dict[str, Any]:
    return {
        "content": content,
        "from_addr": "+27840000000",
        "to_addr": "12345",
        "transport_name": transport,
        "transport_type": "sms",
    }


def test_fan_out_gives_every_app_each_message_once_whatever_its_replicas(dep: Deployment) -> None:
    results = [dep.send("fan_in", f"news {i}") for i in range(6)]
    assert all(r["destinations"] == ["inbound:fan_a", "inbound:fan_b"] for r in results)
    ids = sorted(r["message_id"] for r in results)
    fan_a = received_by_replica(dep, "fan_a")
    fan_b = received_by_replica(dep, "fan_b")
    assert sorted(m["message_id"] for ms in fan_a.values() for m in ms) == ids
    assert sorted(m["message_id"] for ms in fan_b.values() for m in ms) == ids
    assert [len(ms) for ms in fan_b.values()] == [3, 3]


def test_scale_up_and_down_while_messages_flow_loses_nothing(dep: Deployment) -> None:
    transport = dep.endpoint("scale_in")
    injected: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def feed() -> None:
        n = 0
        try:
            while not stop.is_set():
                chunk = [
                    {"content": f"load {n + i}", "from_addr": f"+2785{(n + i) % 50:07d}", "to_addr": "123"}
                    for i in range(40)
                ]
                injected.extend(ray.get(transport.inject_many.remote(chunk), timeout=60))
                n += len(chunk)
                time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        _wait_until(lambda: len(injected) >= 200, "no messages flowed before scaling")
        assert dep.scale("scale_app", 3) == ["0", "1", "2"]
        mark = len(injected)
        _wait_until(lambda: len(injected) >= mark + 200, "no messages flowed after scaling up")
        assert dep.scale("scale_app", 1) == ["0"]
        mark = len(injected)
        _wait_until(lambda: len(injected) >= mark + 200, "no messages flowed after scaling down")
    finally:
        stop.set()
        feeder.join(60)
    assert not errors, errors
    replies = ray.get(transport.wait_for_sent.remote(len(injected), 30))
    answered = [r["in_reply_to"] for r in replies]
    assert len(answered) == len(injected), "every message answered exactly once"
    assert set(answered) == set(injected)
    repliers = {r["content"].split(":")[0] for r in replies}
    assert repliers == {"scale/0", "scale/1", "scale/2"}, "the added replicas took messages"
    assert dep.failures(endpoint="scale_in") == [] and dep.failures(endpoint="scale_app") == []


def _wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_spawn_an_application_class_from_code_for_an_endpoint_without_one(dep: Deployment) -> None:
    early = dep.send("code_in", "before any replica")
    assert early["destinations"] == []
    [failure] = early["failures"]
    assert "code_app" in failure["reason"] and "no replicas" in failure["reason"]

    with pytest.raises(ray_dispatch.ConfigError, match="ApplicationActor"):
        dep.spawn("code_app", NotAnApplication)
    with pytest.raises(ray_dispatch.ConfigError, match="unknown endpoint 'nope'"):
        dep.spawn("nope", TaggingApp)
    with pytest.raises(ray_dispatch.ConfigError, match="colour"):
        dep.spawn("code_app", TaggingApp, config={"colour": "red"})
    assert dep.replica_ids("code_app") == []

    assert dep.spawn("code_app", TaggingApp, 2, config={"tag": "code"}) == ["0", "1"]
    transport = dep.endpoint("code_in")
    for i in range(4):
        ray.get(transport.inject.remote(f"hi {i}"))
    replayed = dep.replay_failure(failure["failure_id"])
    assert replayed == {"destinations": ["inbound:code_app"], "failures": []}
    assert dep.scale("code_app", 3) == ["0", "1", "2"]  # grows with the spawned class and config
    for i in range(3):
        ray.get(transport.inject.remote(f"more {i}"))
    replies = sorted(r["content"] for r in ray.get(transport.wait_for_sent.remote(8, 15)))
    assert len(replies) == 8
    assert {r.split(":")[0] for r in replies} == {"code/0", "code/1", "code/2"}
    assert "before any replica" in {r.split(": ", 1)[1] for r in replies}
    assert dep.failures(endpoint="code_in") == []
