"""Explain by message id and the live graph, on a running deployment (API and CLI).

One deployment for the module: MemoryTransports for SMS and XMPP, two
EchoApplication replicas, and a ``late`` transport whose application has no
replicas (its messages fail at delivery). ``recent_outcomes`` is small so the
ring's bound is tested too.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from click.testing import CliRunner, Result

from ray_dispatch.api import Deployment
from ray_dispatch.cli import main
from ray_dispatch.core.errors import ConfigError

pytestmark = pytest.mark.ray

NAME, NAMESPACE = "explain-test", "explain_tests"
RECENT = 40
CONFIG: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["smpp_transport", "xmpp_transport", "late_transport"],
    "exposed_names": ["my_application", "later_app"],
    "route_mappings": {
        "smpp_transport": "my_application",
        "xmpp_transport": "my_application",
        "late_transport": "later_app",
    },
    "recent_outcomes": RECENT,
    "endpoints": {
        "smpp_transport": {"class": "actors.builtin.MemoryTransport"},
        "xmpp_transport": {"class": "actors.builtin.MemoryTransport", "config": {"transport_type": "xmpp"}},
        "my_application": {"class": "actors.builtin.EchoApplication", "replicas": 2},
    },
}
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def dep(ray_session: None) -> Iterator[Deployment]:
    deployment = Deployment.start(CONFIG, name=NAME, namespace=NAMESPACE, health_interval=0.5)
    try:
        yield deployment
    finally:
        deployment.shutdown()


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def app_events(dep: Deployment) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for rid in dep.replica_ids("my_application"):
        events += ray.get(dep.endpoint("my_application", rid).received.remote())["events"]
    return events


def test_a_message_from_a_transport_is_explained_by_its_id(dep: Deployment) -> None:
    sms = dep.endpoint("smpp_transport")
    injected = ray.get(sms.inject.remote("hello", from_addr="+27820000001"))
    explained = dep.explain(injected["message_id"])
    recorded = explained.recorded
    assert (recorded.direction, recorded.endpoint) == ("inbound", "smpp_transport")
    assert recorded.destinations == ["inbound:my_application"] and recorded.failures == []
    assert recorded.trace is None  # routed on the data path, untraced
    assert explained.agrees and explained.dispatcher == 0 and explained.deployment == NAME
    assert explained.rerun.steps_of("router") == ["route_mappings['smpp_transport'] -> ['my_application']"]
    text = explained.to_text()
    assert "what happened: delivered to inbound:my_application" in text
    assert f"routed by deployment {NAME!r} (dispatcher 0)" in text


def test_the_reply_and_its_ack_are_explained_with_the_return_route(dep: Deployment) -> None:
    xmpp = dep.endpoint("xmpp_transport")
    injected = ray.get(xmpp.inject.remote("ping", from_addr="alice@example.org"))
    [reply] = [r for r in ray.get(xmpp.wait_for_sent.remote(1, 20)) if r["in_reply_to"] == injected["message_id"]]
    out = dep.explain(reply["message_id"])
    assert out.recorded.direction == "outbound" and out.recorded.endpoint == "my_application"
    assert out.recorded.destinations == ["outbound:xmpp_transport"] and out.agrees

    deadline = time.monotonic() + 20
    acks: list[dict[str, Any]] = []
    while not acks and time.monotonic() < deadline:
        acks = [e for e in app_events(dep) if e["user_message_id"] == reply["message_id"]]
        time.sleep(0.05)
    [ack] = acks
    event = dep.explain(ack["event_id"])
    assert event.recorded.direction == "event" and event.recorded.destinations == ["event:my_application"]
    assert event.agrees and event.state_reads == [f"return_route:{reply['message_id']}"]
    assert any(s.startswith("return route: event about") for s in event.rerun.steps_of("return_route"))


def test_send_with_trace_keeps_the_live_trace(dep: Deployment) -> None:
    sent = dep.send("smpp_transport", "traced", trace=True)
    explained = dep.explain(sent["message_id"])
    assert explained.recorded.trace is not None
    assert [s.kind for s in explained.recorded.trace] == ["router", "publish"]
    assert "trace recorded live:" in explained.to_text()


def test_a_failed_delivery_is_what_happened_and_the_rerun_still_agrees(dep: Deployment) -> None:
    sent = dep.send("late_transport", "nobody home")
    assert sent["destinations"] == [] and sent["failures"]
    explained = dep.explain(sent["message_id"])
    [failure] = explained.recorded.failures
    assert failure["failure_id"] == sent["failures"][0]["failure_id"] and failure["destination"] == "later_app"
    assert explained.recorded.destinations == [] and explained.recorded.result.startswith("failed at")
    assert explained.rerun.destinations == ["inbound:later_app"]  # the harness delivers to anything routed
    assert dep.purge_failures() >= 1


def test_unknown_ids_and_the_ring_bound(dep: Deployment) -> None:
    with pytest.raises(KeyError, match=f"'no-such-id' is not among the last .* recent_outcomes: {RECENT}"):
        dep.explain("no-such-id")
    sms = dep.endpoint("smpp_transport")
    first = ray.get(sms.inject.remote("first of many"))["message_id"]
    assert dep.explain(first).recorded.destinations == ["inbound:my_application"]
    fields = {"from_addr": "+27820000009", "to_addr": "12345"}
    ray.get(sms.inject_many.remote([{"content": f"n{i}", **fields} for i in range(RECENT)]))
    with pytest.raises(KeyError, match=first):
        dep.explain(first)  # pushed out of the ring by RECENT newer messages (and their replies and acks)


def test_a_bad_recent_outcomes_value_fails_before_anything_starts(ray_session: None) -> None:
    with pytest.raises(ConfigError, match="recent_outcomes: Input should be greater than or equal to 0"):
        Deployment.start({**CONFIG, "recent_outcomes": -1}, name="never", namespace=NAMESPACE)
    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("never:")]


def test_the_live_graph_has_counts_replicas_and_failures(dep: Deployment) -> None:
    assert dep.send("late_transport", "nobody home either")["failures"]
    status = dep.status()
    stats = status["dispatchers"][0]["stats"]
    topology = dep.graph()
    assert topology.replicas == {
        "smpp_transport": 1,
        "xmpp_transport": 1,
        "late_transport": 0,
        "my_application": 2,
        "later_app": 0,
    }
    expected_sms = stats["received"].get("inbound:smpp_transport", 0) + stats["received"].get("event:smpp_transport", 0)
    expected_sms += stats["published"].get("outbound:smpp_transport", 0)
    assert topology.counts["smpp_transport"] >= expected_sms > 0  # counts only grow between status and graph
    assert topology.failed.get("later_app", 0) >= 1
    svg = topology.to_svg()
    root = ET.fromstring(svg)
    edges = {str(g.get("data-endpoint")): g for g in root.iter(f"{SVG}g") if "edge" in g.get("class", "")}
    assert sorted(edges) == sorted([*CONFIG["transport_names"], *CONFIG["exposed_names"]])
    sms_texts = [str(t.text) for t in edges["smpp_transport"].iter(f"{SVG}text")]
    assert sms_texts[0] == "smpp_transport" and re.fullmatch(r"[\d,]+ msgs \u00b7 [\d,]+\.\d/s", sms_texts[1])
    assert (
        "my_application \u00d72" in svg
        and "no replicas running" in svg
        and f"deployment {NAME} (namespace {NAMESPACE}), live" in svg
    )
    assert "failed" in [t.get("class") for t in edges["later_app"].iter(f"{SVG}text")]


def test_the_live_graph_shows_the_failure_records_kept_now_not_every_failure_ever(dep: Deployment) -> None:
    dep.send("late_transport", "one more for nobody")
    assert dep.graph().failed.get("later_app", 0) >= 1
    purged = cli("failures", "purge", "--all", "--name", NAME, "--namespace", NAMESPACE)
    assert purged.exit_code == 0, purged.output
    [dispatcher] = dep.status()["dispatchers"]
    assert dispatcher["failures"] == 0 and dispatcher["stats"]["failed"]["inbound:later_app"] >= 1
    topology = dep.graph()
    assert topology.failed == {}
    later_app = [g for g in ET.fromstring(topology.to_svg()).iter(f"{SVG}g") if g.get("data-endpoint") == "later_app"]
    assert "failed" not in [t.get("class") for g in later_app for t in g.iter(f"{SVG}text")]


def test_cli_explain_and_graph_by_deployment(dep: Deployment, tmp_path: Path) -> None:
    target = ["--deployment", NAME, "--namespace", NAMESPACE]
    sent = dep.send("smpp_transport", "from the cli test")
    shown = cli("explain", *target, sent["message_id"])
    assert shown.exit_code == 0, shown.output
    assert "what happened: delivered to inbound:my_application" in shown.output
    assert "the re-run routes it as the dispatcher did." in shown.output
    unknown = cli("explain", *target, "nope")
    assert unknown.exit_code == 2 and "'nope' is not among the last" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and "Traceback" not in unknown.stderr
    missing = cli("explain", "--deployment", "absent", "--namespace", NAMESPACE, "x")
    assert missing.exit_code == 1 and "no deployment named 'absent'" in missing.stderr

    out = tmp_path / "live.svg"
    drawn = cli("graph", *target, "-o", str(out))
    assert drawn.exit_code == 0, drawn.output
    svg = out.read_text(encoding="utf-8")
    assert "my_application \u00d72" in svg and " msgs" in svg
    ET.fromstring(svg)


def test_a_dead_replica_shows_on_the_graph(dep: Deployment) -> None:
    """Last: it kills a replica for good."""
    victim = dep.endpoint("my_application", dep.replica_ids("my_application")[-1])
    ray.kill(victim, no_restart=True)
    deadline = time.monotonic() + 20
    topology = dep.graph()
    while topology.dead.get("my_application") != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        topology = dep.graph()
    assert topology.dead == {"my_application": 1} and topology.replicas["my_application"] == 1
    assert "1 dead" in topology.to_svg()


def test_validate_refuses_a_bad_recent_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "recent_outcomes": "lots"}), encoding="utf-8")
    result = cli("validate", str(path))
    assert result.exit_code == 2 and "recent_outcomes: Input should be a valid integer" in result.stderr
    assert str(path) in result.stderr
    path.write_text(yaml.safe_dump({**CONFIG, "recent_outcomes": 0}), encoding="utf-8")
    assert cli("validate", str(path)).exit_code == 0


def test_with_two_dispatchers_each_message_is_explained_by_the_one_that_routed_it(ray_session: None) -> None:
    config = {**CONFIG, "dispatcher": {"replicas": 2}, "recent_outcomes": 1000}
    deployment = Deployment.start(config, name="explain-two", namespace=NAMESPACE, health_interval=0.5)
    try:
        sms = deployment.endpoint("smpp_transport")
        fields = {"from_addr": "+27820000042", "to_addr": "12345"}
        ids = ray.get(sms.inject_many.remote([{"content": f"m{i}", **fields} for i in range(20)]))
        explained = [deployment.explain(i) for i in ids]
        assert all(e.recorded.destinations == ["inbound:my_application"] and e.agrees for e in explained)
        routed_by = {e.dispatcher for e in explained}
        per_dispatcher = [
            s["stats"]["received"].get("inbound:smpp_transport", 0) for s in deployment.status()["dispatchers"]
        ]
        assert routed_by == {i for i, n in enumerate(per_dispatcher) if n}  # each answered for what it routed
        with pytest.raises(KeyError, match=r"dispatcher 0 .*; .*dispatcher 1"):
            deployment.explain("unknown")
    finally:
        deployment.shutdown()
