"""Live reconfiguration on Ray: ``apply`` during a stream, a refused apply, ``--dry-run``, history and rollback.

Each test starts its own deployment of two dispatchers sharing a Redis
routing store (a real ``redis-server`` on loopback), so that an event finds
the return route of its message whichever dispatcher routed the message.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from click.testing import CliRunner, Result

import ray_dispatch
from actors.history import find_history
from ray_dispatch.api import Deployment
from ray_dispatch.cli import main
from ray_dispatch.reconfigure import ApplyRefused
from tests.helpers_reconf import REFUSAL
from tests.redis_server import RedisServer, redis_server_available
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not redis_server_available(), reason="needs redis-server"),
]

USERS = [f"+2784{i:07d}" for i in range(16)]
CHUNK = 100


def generation_1(redis_url: str, prefix: str) -> dict[str, Any]:
    """SimpleDispatchRouter: every message from ``sms`` to ``app1``."""
    return {
        "router_class": "routers.simple.SimpleDispatchRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app1"],
        "route_mappings": {"sms": "app1"},
        "dispatcher": {"replicas": 2},
        "recent_outcomes": 100_000,
        "store": {"class": "ray_dispatch.redis_store.RedisStore", "url": redis_url, "prefix": prefix},
        "endpoints": {
            "sms": {"class": "actors.builtin.MemoryTransport"},
            "app1": {"class": "actors.builtin.EchoApplication", "replicas": 2, "policy": "sticky"},
        },
    }


def generation_2(redis_url: str, prefix: str, router: str = "routers.content_keyword.ContentKeywordRouter") -> dict:
    """ContentKeywordRouter: ``two ...`` to a new application ``app2``, the rest to ``app1``."""
    first = generation_1(redis_url, prefix)
    return {
        **{k: v for k, v in first.items() if k != "route_mappings"},
        "router_class": router,
        "exposed_names": ["app1", "app2"],
        "keyword_mappings": {"app2": "two"},
        "fallback_application": "app1",
        "transport_mappings": {"12345": "sms"},
        "endpoints": {
            **first["endpoints"],
            "app2": {"class": "actors.builtin.EchoApplication", "policy": "sticky"},
        },
    }


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def deployment(ray_session: None, redis_url: str, request: pytest.FixtureRequest) -> Iterator[Deployment]:
    name = f"apply-{request.node.name[5:40]}".replace("_", "-")
    dep = ray_dispatch.deploy(generation_1(redis_url, name), name=name, namespace="apply_tests", health_interval=1.0)
    try:
        yield dep
    finally:
        dep.shutdown()


class Stream:
    """Injects numbered messages from ``USERS`` into transport ``sms`` in chunks, on a thread, until stopped."""

    def __init__(self, dep: Deployment, limit: int = 20_000) -> None:
        self.transport = dep.endpoint("sms", 0)
        self.limit = limit
        self.ids: list[str] = []
        self.stop_after: int | None = None  # stop once this many were sent
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            n = 0
            while n < self.limit and (self.stop_after is None or n < self.stop_after):
                chunk = []
                for _ in range(CHUNK):
                    user, seq = USERS[n % len(USERS)], n // len(USERS)
                    word = "two" if seq % 2 else "one"
                    chunk.append({"content": f"{word} {seq}", "from_addr": user, "to_addr": "12345"})
                    n += 1
                self.ids += ray.get(self.transport.inject_many.remote(chunk), timeout=300)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, more: int) -> list[str]:
        """Send ``more`` after now, then stop; return every id sent."""
        self.stop_after = len(self.ids) + more
        self._thread.join(timeout=600)
        assert not self._thread.is_alive(), "the stream did not finish"
        assert self.error is None, repr(self.error)
        return self.ids


def app_inboxes(dep: Deployment) -> dict[tuple[str, str], dict[str, list[dict[str, Any]]]]:
    """Messages and events each replica of app1 and app2 received, by (endpoint, replica)."""
    return {
        (app, rid): ray.get(dep.endpoint(app, rid).received.remote(), timeout=60)
        for app in ("app1", "app2")
        if app in dep.config.endpoints
        for rid in dep.replica_ids(app)
    }


def recorded(dep: Deployment) -> dict[int, list[dict[str, Any]]]:
    """Every dispatcher's recent outcomes, in the order it routed them."""
    return {i: ray.get(d.recent_records.remote(), timeout=120) for i, d in enumerate(dep.dispatchers)}


def counts(inboxes: dict[tuple[str, str], dict[str, list[dict[str, Any]]]]) -> tuple[int, int]:
    return sum(len(i["messages"]) for i in inboxes.values()), sum(len(i["events"]) for i in inboxes.values())


def test_apply_during_a_stream_loses_nothing_keeps_order_and_routes_each_message_by_one_generation(
    deployment: Deployment, redis_url: str
) -> None:
    dep = deployment
    stream = Stream(dep)
    assert wait_for(lambda: len(stream.ids) >= 5000, 300), "the stream did not start"
    result = dep.apply(generation_2(redis_url, dep.name))
    assert result.applied and result.generation is not None and result.generation.number == 2
    ids = stream.finish(more=5000)
    sent = len(ids)
    assert sent >= 10_000 and len(set(ids)) == sent

    transport = dep.endpoint("sms", 0)
    replies = ray.get(transport.wait_for_sent.remote(sent, timeout=300), timeout=320)
    assert wait_for(lambda: counts(app_inboxes(dep)) == (sent, sent), 300), counts(app_inboxes(dep))
    inboxes = app_inboxes(dep)

    # 0 lost, none twice: every message reached exactly one application, every reply left, every ack came back.
    where: dict[str, str] = {}
    for (app, _), inbox in inboxes.items():
        for m in inbox["messages"]:
            assert m["message_id"] not in where, f"{m['message_id']} arrived twice"
            where[m["message_id"]] = app
    assert set(where) == set(ids)
    assert len(replies) == sent and {r["in_reply_to"] for r in replies} == set(ids)
    reply_to = {r["message_id"]: r["in_reply_to"] for r in replies}
    for (app, _), inbox in inboxes.items():  # each ack went back to the application that sent the reply
        assert all(where[reply_to[e["user_message_id"]]] == app for e in inbox["events"])

    # Per user, at each replica, in the order sent.
    for inbox in inboxes.values():
        seqs: dict[str, list[int]] = defaultdict(list)
        for m in inbox["messages"]:
            seqs[m["from_addr"]].append(int(m["content"].split()[1]))
        assert all(s == sorted(s) for s in seqs.values())

    # Each message routed wholly by one generation, recorded right; a dispatcher never goes back.
    generation_of: dict[str, int] = {}
    for index, records in recorded(dep).items():
        sequence = [r["generation"] for r in records]
        assert sequence == sorted(sequence), f"dispatcher {index} went back to an older generation"
        assert set(sequence) == {1, 2}, f"dispatcher {index} did not route under both generations"
        for r in records:
            if r["direction"] == "inbound":
                generation_of[r["message_id"]] = r["generation"]
                word = r["message"]["content"].split()[0]
                expected = "app2" if r["generation"] == 2 and word == "two" else "app1"
                assert r["destinations"] == [f"inbound:{expected}"], r
                assert where[r["message_id"]] == expected
    assert set(generation_of) == set(ids)
    by_user: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for (_, _), inbox in inboxes.items():
        for m in inbox["messages"]:
            by_user[m["from_addr"]].append((int(m["content"].split()[1]), generation_of[m["message_id"]]))
    for user in USERS:  # per user: every generation-1 message was sent before every generation-2 one
        order = [g for _, g in sorted(by_user[user])]
        assert order == sorted(order), user
    assert dep.failures() == []
    status = dep.status()
    assert [d["generation"] for d in status["dispatchers"]] == [2, 2]
    assert dep.replica_ids("app2") == ["0"]


def test_apply_whose_router_fails_on_one_dispatcher_leaves_both_on_the_old_generation(
    deployment: Deployment, redis_url: str
) -> None:
    dep = deployment
    stream = Stream(dep)
    assert wait_for(lambda: len(stream.ids) >= 500, 300), "the stream did not start"
    refused = generation_2(redis_url, dep.name, router="tests.helpers_reconf.RefusedOnSecondDispatcher")
    with pytest.raises(ApplyRefused) as caught:
        dep.apply(refused)
    text = str(caught.value)
    assert "\n" not in text
    assert "generation 2 not applied" in text and f"dispatcher 1: ConnectionError: {REFUSAL}" in text
    assert "dispatcher 0" not in text
    ids = stream.finish(more=500)

    assert wait_for(lambda: counts(app_inboxes(dep))[0] == len(ids), 300)
    inboxes = app_inboxes(dep)
    assert {app for app, _ in inboxes} == {"app1"}  # app2 never started
    assert sorted(m["message_id"] for i in inboxes.values() for m in i["messages"]) == sorted(ids)
    for index, records in recorded(dep).items():
        assert {r["generation"] for r in records} == {1}, index
    status = dep.status()
    assert [(d["generation"], d["router"]) for d in status["dispatchers"]] == [(1, "SimpleDispatchRouter")] * 2
    assert [h["generation"] for h in dep.history()] == [1]
    assert dep.failures() == []


def test_apply_whose_new_application_cannot_start_changes_nothing(deployment: Deployment, redis_url: str) -> None:
    dep = deployment
    broken = generation_2(redis_url, dep.name)
    broken["endpoints"]["app2"]["class"] = "tests.helpers_reconf.CannotStart"
    with pytest.raises(ApplyRefused) as caught:
        dep.apply(broken)
    assert str(caught.value) == (
        "generation 2 not applied: endpoint could not start: RuntimeError: its database is unavailable;"
        " every dispatcher stays on generation 1"
    )
    assert [(d["generation"], d["router"]) for d in dep.status()["dispatchers"]] == [(1, "SimpleDispatchRouter")] * 2
    assert dep.replica_ids("app2") == [] and [h["generation"] for h in dep.history()] == [1]
    assert dep.send("sms", "two still")["destinations"] == ["inbound:app1"]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_dry_run_changes_nothing_then_apply_history_and_rollback(
    deployment: Deployment, redis_url: str, tmp_path: Path
) -> None:
    dep = deployment
    target = ["--deployment", dep.name, "--namespace", dep.namespace]
    transport = dep.endpoint("sms", 0)
    sample = [
        {"content": f"{'two' if i % 3 == 0 else 'one'} {i}", "from_addr": USERS[i % 4], "to_addr": "12345"}
        for i in range(30)
    ]
    ray.get(transport.inject_many.remote(sample), timeout=120)
    started = find_history(dep.name, dep.namespace)  # the one the deployment started, still there
    assert started is not None and ray.get(started.current.remote(), timeout=60).note == "start"
    new_file = tmp_path / "keywords.yaml"
    new_file.write_text(yaml.safe_dump(generation_2(redis_url, dep.name)))

    shown = cli("apply", str(new_file), "--dry-run", *target)
    assert shown.exit_code == 0, shown.stderr
    assert "plan: generation 1 -> 2" in shown.stdout
    assert "router: routers.simple.SimpleDispatchRouter -> routers.content_keyword.ContentKeywordRouter" in shown.stdout
    assert "endpoint added: app2 (1 replica(s))" in shown.stdout
    # The 10 "two" messages would now go to app2 (their replies and acks go where they went).
    assert ": 10 routed differently" in shown.stdout, shown.stdout
    assert "dry run: nothing changed (generation 1 still in force)" in shown.stdout
    assert [d["generation"] for d in dep.status()["dispatchers"]] == [1, 1]
    assert dep.replica_ids("app2") == [] and [h["generation"] for h in dep.history()] == [1]
    assert dep.send("sms", "two after the dry run")["destinations"] == ["inbound:app1"]

    bad = cli("apply", str(tmp_path / "missing.yaml"), *target)
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1 and "missing.yaml" in bad.stderr

    applied = cli("apply", str(new_file), *target)
    assert applied.exit_code == 0, applied.stderr
    assert "applied: generation 2 in force since" in applied.stdout
    assert dep.send("sms", "two now")["destinations"] == ["inbound:app2"]
    assert dep.replica_ids("app2") == ["0"]

    back = cli("apply", "--rollback", *target)
    assert back.exit_code == 0, back.stderr
    assert "applied: generation 3" in back.stdout and "endpoint removed: app2" in back.stdout
    assert dep.send("sms", "two again")["destinations"] == ["inbound:app1"]
    assert dep.replica_ids("app2") == []

    listed = cli("history", *target)
    lines = listed.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["generation", "1"], ["generation", "2"], ["generation", "3"]]
    assert "start" in lines[0] and str(new_file) in lines[1] and "rollback to 1" in lines[2]
    status = cli("status", "--name", dep.name, "--namespace", dep.namespace)
    assert status.stdout.count("generation 3, applied ") == 2
    assert dep.failures() == []


def test_a_dispatcher_restarted_after_an_apply_routes_with_the_generation_in_force(
    deployment: Deployment, redis_url: str
) -> None:
    dep = deployment
    dep.apply(generation_2(redis_url, dep.name))
    restarted = dep.dispatchers[1]
    pid_before = ray.get(restarted.ping.remote(), timeout=60)["pid"]
    ray.kill(restarted, no_restart=False)  # Ray rebuilds it from the config it was first started with

    def pid_now() -> int | None:
        try:
            return int(ray.get(restarted.ping.remote(), timeout=10)["pid"])
        except ray.exceptions.RayError:
            return None

    assert wait_for(lambda: pid_now() not in (None, pid_before), 120), "Ray did not restart the dispatcher"
    ray.get(restarted.start.remote(), timeout=120)
    info = ray.get(restarted.status.remote(), timeout=60)
    assert (info["generation"], info["router"]) == (2, "ContentKeywordRouter")
    routed = ray.get(
        restarted.inject.remote(
            "inbound",
            "sms",
            {
                "content": "two after the restart",
                "from_addr": "+27840000001",
                "to_addr": "12345",
                "transport_name": "sms",
                "transport_type": "sms",
                "message_type": "user_message",
            },
        ),
        timeout=120,
    )
    assert routed["destinations"] == ["inbound:app2"]
