"""Hostile input on Ray: 10,000 malformed payloads into the transport API and the dispatcher, and a routing loop.

A seeded generator (the same run every time; change ``SEED`` to explore)
builds malformed payloads of every kind the issue names — wrong types,
missing fields, 1 MB content, invalid UTF-8, non-dict payloads, unknown
endpoints, unknown directions — and interleaves them with valid messages:

- into the transport API (``MemoryTransport.inject`` / ``inject_event`` /
  ``inject_many``): each malformed call gets ``InvalidMessage`` naming the
  field (and, for ``inject_many``, the index) and sends nothing; a message
  for an unknown transport is valid at the edge and becomes a failure record;
- into the dispatcher directly (``DispatcherActor.receive`` batches mixing
  junk items with valid ones): each junk item becomes exactly one failure
  record, and the valid items of the same batch are delivered;
- into ``Deployment.send``: a clear error naming the field or endpoint.

Every valid message must arrive (counted by id in a ``Ledger``), and no
failure record may be about a valid one.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
import ray

from actors.wire import decode_batch, encode_batch, encode_plain_item, plain_item, to_wire
from ray_dispatch.api import Deployment
from ray_dispatch.core.errors import ConfigError, InvalidMessage
from ray_dispatch.core.message import TransportEvent, TransportUserMessage, message_from_dict
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray]

SEED = 5_2024
ONE_MB = 1 << 20
LEDGER = "ledger-test_hostile_input_on_ray"  # the ledger fixture's name for this module
TRANSPORT_API_JUNK = 4_000
DISPATCHER_JUNK = 5_600
SEND_JUNK = 400
HUGE_EVERY = 400  # one junk payload in this many carries 1 MB of content as well
WINDOW = 1_000  # transport calls in flight at once

CONFIG: dict[str, Any] = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
    "endpoints": {
        "sms": {"class": "actors.builtin.MemoryTransport", "config": {"auto_ack": False}},
        "app": {"class": "actors.testing.LedgerApplication", "config": {"ledger": LEDGER}},
    },
}

# -- the generator --------------------------------------------------------------------

USER_TEXT_FIELDS = ["content", "from_addr", "to_addr", "transport_name", "transport_type", "in_reply_to", "group"]
INVALID_UTF8 = b"\xc3\x28 \xff"


def not_text(rng: random.Random) -> Any:
    """A value no string field accepts (pydantic does not turn these into strings)."""
    return rng.choice(
        [rng.randint(-5, 10**12), 1.5, True, [1, "x"], {"k": "v"}, INVALID_UTF8 + bytes([rng.randint(0, 255)])]
    )


def bad_user_field(rng: random.Random) -> tuple[str, Any]:
    """A user-message field and a value validation refuses."""
    name = rng.choice(
        [*USER_TEXT_FIELDS, "message_id", "session_event", "helper_metadata", "timestamp", "message_version"]
    )
    if name == "session_event":
        return name, rng.choice(["bogus", 5, ["new"]])
    if name == "helper_metadata":
        return name, rng.choice([[1, 2], "meta", 7, {3: "non-str key"}, {"k": {1, 2}}, {"k": float("nan")}])
    if name == "timestamp":
        return name, rng.choice(["not a time", [2024, 1, 1], "2024-13-45 99:99:99.000000"])
    if name == "message_version":
        return name, rng.choice(["1", 20110921, None])
    return name, not_text(rng)


def valid_user(i: int, tag: str) -> dict[str, Any]:
    """Fields of a valid inbound message from ``sms`` with a known id."""
    return {"message_id": f"{tag}-{i}", "content": f"valid {i}", "from_addr": f"+2782{i % 97:05d}", "to_addr": "100"}


@dataclass
class Expected:
    """What the run must show."""

    valid_ids: set[str] = field(default_factory=set)
    valid_events: set[str] = field(default_factory=set)
    failure_ids: Counter[str] = field(default_factory=Counter)  # message id -> failure records expected
    anonymous_failures: int = 0  # junk without a usable id
    never_sent: set[str] = field(default_factory=set)
    hostile: Counter[str] = field(default_factory=Counter)

    @property
    def failures(self) -> int:
        return sum(self.failure_ids.values()) + self.anonymous_failures


# -- (a) the transport API --------------------------------------------------------------


@dataclass
class Call:
    """One call into the transport actor and what it must do."""

    method: str
    kwargs: dict[str, Any]
    fields: tuple[str, ...] = ()  # empty: valid; else the error must name one of these
    index: int | None = None  # inject_many: the error names messages[index]


def transport_calls(rng: random.Random, expected: Expected) -> list[Call]:
    """``TRANSPORT_API_JUNK`` malformed calls, one valid call after every three."""
    calls: list[Call] = []
    hostile = 0
    while hostile < TRANSPORT_API_JUNK:
        n = len(calls)
        if n % 4 == 3:
            calls.append(valid_transport_call(rng, n, expected))
            continue
        hostile += 1
        calls.append(junk_transport_call(rng, n, hostile, expected))
    return calls


def valid_transport_call(rng: random.Random, n: int, expected: Expected) -> Call:
    choice = rng.randrange(10)
    if choice == 0:  # an event about some message: routed to the app by its transport_name
        event_id = f"ev-{n}"
        expected.valid_events.add(event_id)
        kwargs = {"event_id": event_id, "event_type": "ack", "user_message_id": f"m{n}", "sent_message_id": "s"}
        return Call("inject_event", kwargs)
    if choice == 1:  # a batch of valid messages
        batch = [valid_user(n * 100 + k, "many") for k in range(20)]
        expected.valid_ids.update(m["message_id"] for m in batch)
        return Call("inject_many", {"messages": batch})
    fields = valid_user(n, "api")
    if n % HUGE_EVERY == 3:
        fields["content"] = "v" * ONE_MB  # huge but valid: it must arrive
    expected.valid_ids.add(fields["message_id"])
    return Call("inject", fields)


def junk_transport_call(rng: random.Random, n: int, hostile: int, expected: Expected) -> Call:
    kind = rng.choice(["wrong_type", "wrong_type", "event", "missing", "many", "non_dict", "unknown_endpoint"])
    expected.hostile[f"api:{kind}"] += 1
    fields = valid_user(n, "junk")
    if hostile % HUGE_EVERY == 0:
        fields["content"] = "h" * ONE_MB
    if kind == "wrong_type":
        name, value = bad_user_field(rng)
        fields[name] = value
        if isinstance(fields["message_id"], str):
            expected.never_sent.add(fields["message_id"])
        return Call("inject", fields, (name,))
    if kind == "event":
        bad = rng.choice(["event_type", "user_message_id", "sent_message_id", "delivery_status", "message_type"])
        event: dict[str, Any] = {"event_type": "ack", "user_message_id": "m1", "sent_message_id": "s"}
        if bad == "event_type":
            event["event_type"] = rng.choice(["bogus", 5, None])
        elif bad == "user_message_id":
            event["user_message_id"] = rng.choice([None, 5, INVALID_UTF8])
        elif bad == "sent_message_id":
            del event["sent_message_id"]
        elif bad == "delivery_status":
            event.update(event_type="delivery_report", delivery_status=rng.choice(["lost", 3]))
        else:  # inject_event forces message_type 'event', so a user-message type field is ignored: use timestamp
            event["timestamp"], bad = "yesterday", "timestamp"
        return Call("inject_event", event, (bad,))
    if kind == "missing":  # inject_many validates message dicts: drop a required field
        name = rng.choice(["to_addr", "from_addr"])
        del fields[name]
        return junk_in_many(rng, n, fields, (name,), expected)
    if kind == "many":
        name, value = bad_user_field(rng)
        fields[name] = value
        return junk_in_many(rng, n, fields, (name,), expected)
    if kind == "non_dict":
        item = rng.choice([None, 5, "text", ["list"], INVALID_UTF8, {1: "int key"}, {("t",): "tuple key"}])
        return junk_in_many(rng, n, item, ("expected a dict",), expected)
    # unknown_endpoint: valid at the edge, but no transport of that name is mapped: a failure record
    fields["transport_name"] = rng.choice(["nope", "", "x" * 300, "sms "])
    expected.failure_ids[fields["message_id"]] += 1
    return Call("inject", fields)


def junk_in_many(rng: random.Random, n: int, junk: Any, names: tuple[str, ...], expected: Expected) -> Call:
    """An ``inject_many`` of valid messages with one junk item: the call fails and none of them is sent."""
    batch: list[Any] = [valid_user(n * 100 + k, "many-junk") for k in range(rng.randint(1, 6))]
    expected.never_sent.update(m["message_id"] for m in batch)
    index = rng.randint(0, len(batch))
    batch.insert(index, junk)
    return Call("inject_many", {"messages": batch}, names, index)


def run_transport_calls(sms: Any, calls: list[Call]) -> dict[str, str]:
    """Make every call (pipelined); check each outcome; return ids of messages whose call succeeded -> method."""
    accepted: dict[str, str] = {}
    for start in range(0, len(calls), WINDOW):
        window = calls[start : start + WINDOW]
        refs = [_submit(sms, call) for call in window]
        for call, ref in zip(window, refs):
            _check_call(call, ref, accepted)
    return accepted


def _submit(sms: Any, call: Call) -> Any:
    method = getattr(sms, call.method)
    if call.method == "inject":
        kwargs = dict(call.kwargs)
        return method.remote(kwargs.pop("content"), **kwargs)
    return method.remote(**call.kwargs)


def _check_call(call: Call, ref: Any, accepted: dict[str, str]) -> None:
    """A junk call raised InvalidMessage naming its field; a valid one returned its id(s), added to ``accepted``."""
    try:
        result = ray.get(ref, timeout=120)
    except InvalidMessage as exc:
        text = str(exc).splitlines()[-1] if "\n" in str(exc) else str(exc)
        assert call.fields, f"valid call {call.method}({_short(call.kwargs)}) refused: {text}"
        assert any(name in text for name in call.fields), f"{text!r} does not name {call.fields}"
        if call.index is not None:
            assert f"messages[{call.index}]" in text, text
        assert len(text) < 5_000, "the error must stay readable (no 1 MB echo)"
        return
    assert not call.fields, f"junk {call.method}({_short(call.kwargs)}) was accepted"
    ids = result if isinstance(result, list) else [result.get("message_id") or result.get("event_id")]
    accepted.update(dict.fromkeys(ids, call.method))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + "..."


# -- (b) the dispatcher directly -------------------------------------------------------------


def wire_user(i: int, tag: str, **fields: Any) -> dict[str, Any]:
    """A valid inbound wire payload from ``sms``."""
    base = {"content": f"wire {i}", "from_addr": f"+2783{i % 89:05d}", "to_addr": "100"}
    message = TransportUserMessage(
        message_id=f"{tag}-{i}", transport_name="sms", transport_type="sms", **{**base, **fields}
    )
    return to_wire(message)


def junk_item(rng: random.Random, i: int, expected: Expected) -> Any:
    """One malformed batch item; records how many failure records it must make."""
    kind = rng.choice(["wrong_type", "wrong_type", "missing", "non_dict", "shape", "direction", "event", "no_id"])
    expected.hostile[f"dispatcher:{kind}"] += 1
    payload = wire_user(i, "djunk")
    if i % HUGE_EVERY == 0:
        payload["content"] = "d" * ONE_MB
    expected.anonymous_failures += 1
    if kind == "wrong_type":
        name, value = bad_user_field(rng)
        payload[name] = value
        return ("inbound", payload)
    if kind == "missing":
        del payload[rng.choice(["to_addr", "from_addr", "transport_name", "transport_type"])]
        return ("inbound", payload)
    if kind == "non_dict":
        return ("inbound", rng.choice([None, 7, "text", [1, 2], INVALID_UTF8, 3.5]))
    if kind == "shape":
        return rng.choice([None, 5, "inbound", INVALID_UTF8, ("inbound",), ("inbound", payload, "extra"), {"a": 1}])
    if kind == "direction":
        return (rng.choice(["sideways", "", None, 5, "INBOUND", ["inbound"]]), payload)
    if kind == "event":
        event = to_wire(
            TransportEvent(event_type="ack", user_message_id="m", sent_message_id="s", transport_name="sms")
        )
        name = rng.choice(["event_type", "user_message_id", "sent_message_id"])
        event[name] = rng.choice([None, 9, INVALID_UTF8] if name != "event_type" else ["bogus", None, 9])
        return ("event", event)
    # no_id: no usable message_id and a missing field; before the fix every such item
    # after the first shared the dedupe key "inbound:None" and vanished without a record
    del payload["message_id"], payload["to_addr"]
    return ("inbound", payload)


def dispatcher_batches(rng: random.Random, expected: Expected) -> list[tuple[str, list[Any]]]:
    """``(source, batch)`` pairs: mixed batches from ``sms``, plus valid items from unknown sources."""
    batches: list[tuple[str, list[Any]]] = []
    made = 0
    n = 0
    while made < DISPATCHER_JUNK:
        if len(batches) % 10 == 9:  # a valid batch from an endpoint the dispatcher does not have
            source = rng.choice(["nope", "app", "SMS"])
            items = [("inbound", wire_user(n + k, "unknown-source")) for k in range(20)]
            n += 20
            for _, payload in items:
                expected.failure_ids[payload["message_id"]] += 1
            made += len(items)
            expected.hostile["dispatcher:unknown_source"] += len(items)
            batches.append((source, items))
            continue
        items = []
        for _ in range(250):
            n += 1
            if n % 4 == 0:
                extra = {"x_custom": n} if n % 8 == 0 else {}
                payload = wire_user(n, "wire", **extra)
                if n % HUGE_EVERY == 4:
                    payload["content"] = "w" * ONE_MB
                expected.valid_ids.add(payload["message_id"])
                items.append(("inbound", payload))
            else:
                items.append(junk_item(rng, n, expected))
                made += 1
        batches.append(("sms", items))
    return batches


# -- (c) Deployment.send ----------------------------------------------------------------------


def send_cases(rng: random.Random, expected: Expected) -> list[tuple[dict[str, Any], type[Exception] | None, str]]:
    """``(kwargs, expected error, text it must contain)``; valid ones have no error."""
    cases: list[tuple[dict[str, Any], type[Exception] | None, str]] = []
    for i in range(SEND_JUNK):
        if i % 4 == 0:
            message_id = f"send-{i}"
            expected.valid_ids.add(message_id)
            cases.append(({"endpoint": "sms", "content": f"send {i}", "message_id": message_id}, None, ""))
        kind = rng.choice(["field", "endpoint", "direction", "event"])
        expected.hostile[f"send:{kind}"] += 1
        if kind == "field":
            name, value = bad_user_field(rng)
            if name in ("content", "from_addr", "to_addr"):
                cases.append(({"endpoint": "sms", name: value}, InvalidMessage, name))
            else:
                cases.append(({"endpoint": "sms", "content": "x", name: value}, InvalidMessage, name))
        elif kind == "endpoint":
            name = rng.choice(["nope", "", "SMS", "x" * 1000])
            cases.append(({"endpoint": name, "content": "x"}, ConfigError, f"unknown endpoint {name[:20]!r}"[:-1]))
        elif kind == "direction":
            direction = rng.choice(["sideways", "INBOUND", "out"])
            cases.append(({"endpoint": "sms", "content": "x", "direction": direction}, InvalidMessage, "direction"))
        else:
            cases.append(
                (
                    {"endpoint": "sms", "direction": "event", "event_type": "bogus", "user_message_id": "m"},
                    InvalidMessage,
                    "event_type",
                )
            )
    return cases


def run_send_cases(dep: Deployment, cases: list[tuple[dict[str, Any], type[Exception] | None, str]]) -> None:
    for kwargs, error, text in cases:
        kwargs = dict(kwargs)
        endpoint = kwargs.pop("endpoint")
        if error is None:
            outcome = dep.send(endpoint, kwargs.pop("content"), timeout=60, **kwargs)
            assert outcome["destinations"] == ["inbound:app"] and outcome["failures"] == [], outcome
            continue
        with pytest.raises(error) as raised:
            dep.send(endpoint, kwargs.pop("content", None), timeout=60, **kwargs)
        message = str(raised.value)
        assert text in message, f"{message[:300]!r} does not say {text!r}"
        assert len(message) < 10_000


# -- the tests --------------------------------------------------------------------------------


def wire_item(item: Any) -> bytes:
    """``item`` encoded as msgpack in the wire's item layout when it is a pair, else as it is."""
    if isinstance(item, tuple) and len(item) == 2:
        return encode_plain_item(*item)
    return msgspec.msgpack.encode(item)


def test_the_wire_decoder_never_vouches_for_a_payload_validation_refuses() -> None:
    """``decode_batch`` (the receivers' check) is sound on every generated item, sent as msgpack in batches."""
    rng = random.Random(SEED)
    expected = Expected()
    vouched: set[str] = set()
    refused = 0
    for _, batch in dispatcher_batches(rng, expected):
        items = [wire_item(item) for item in batch]
        received, bad = decode_batch(encode_batch(items))
        refused += len(bad)
        good = [i for i in range(len(items)) if i not in {b.position for b in bad}]
        for index, (_, message) in zip(good, received):
            assert message.to_dict() == message_from_dict(plain_item(items[index])[1]).to_dict()
            vouched.add(message["message_id"])
    assert expected.valid_ids <= vouched, "valid payloads decode"
    bad_payloads = ("wrong_type", "missing", "non_dict", "event", "no_id")
    assert refused >= sum(expected.hostile[f"dispatcher:{kind}"] for kind in bad_payloads)


@pytest.mark.slow
def test_ten_thousand_malformed_payloads_get_clear_errors_or_records_and_every_valid_message_arrives(
    ledger: Any,
) -> None:
    rng = random.Random(SEED)
    expected = Expected()
    calls = transport_calls(rng, expected)
    batches = dispatcher_batches(rng, expected)
    sends = send_cases(rng, expected)
    assert sum(expected.hostile.values()) >= 10_000, expected.hostile

    dep = Deployment.start(CONFIG, name="hostile", health_interval=1.0)
    try:
        dispatcher = dep.dispatchers[0]
        started = time.monotonic()
        accepted = run_transport_calls(dep.endpoint("sms"), calls)
        refs = [dispatcher.receive.remote(source, batch, None) for source, batch in batches]
        assert ray.get(refs, timeout=180) == [[] for _ in batches], "the dispatcher refuses nothing"
        run_send_cases(dep, sends)
        with pytest.raises(ConfigError, match="unknown endpoint 'nope'"):
            dep.endpoint("nope")

        expected_ids = expected.valid_ids | set(expected.failure_ids)
        assert set(accepted) - expected.valid_events <= expected_ids
        arrived = wait_for(lambda: expected.valid_ids <= set(ray.get(ledger.ids.remote(), timeout=30)), 60)
        received = ray.get(ledger.ids.remote(), timeout=30)
        missing = expected.valid_ids - set(received)
        assert arrived and not missing, f"{len(missing)} valid messages lost, e.g. {sorted(missing)[:5]}"
        assert expected.valid_events <= set(ray.get(ledger.ids.remote("event"), timeout=30))
        assert not (set(received) & (expected.never_sent | set(expected.failure_ids))), "junk reached the app"

        failures = ray.get(dispatcher.failures.remote(), timeout=60)
        about = Counter(_message_id(r) for r in failures)
        assert not (set(about) & expected.valid_ids), "a valid message became a failure record"
        for message_id, count in expected.failure_ids.items():
            assert about[message_id] == count, (message_id, about[message_id])
        assert len(failures) == expected.failures, (len(failures), expected.failures)
        assert not (set(about) & expected.never_sent), "a refused inject_many sent part of its batch"
        assert all(len(r["reason"]) <= 2_100 for r in failures)
        assert all(r["reason"] for r in failures)
        reasons = Counter(r["error_type"] or r["reason"].split(" (")[0] for r in failures)
        assert {"InvalidMessage", "UnknownEndpoint", "NoRoute"} <= set(reasons), reasons
        elapsed = time.monotonic() - started
        print(
            f"\nhostile: {sum(expected.hostile.values())} malformed, {len(expected.valid_ids)} valid,"
            f" {len(failures)} failure records, {elapsed:.1f} s; {dict(expected.hostile)}; {dict(reasons)}"
        )
    finally:
        dep.shutdown(timeout=10)


def _message_id(record: dict[str, Any]) -> str | None:
    message = record["message"]
    if isinstance(message, list) and len(message) == 2:  # a malformed (direction, payload) item
        message = message[1]
    found = message.get("message_id") if isinstance(message, dict) else None
    return found if isinstance(found, str) else None


# -- a routing loop -----------------------------------------------------------------------------

LOOP: dict[str, Any] = {
    "router_class": "routers.TransportToTransportRouter",
    "transport_names": ["t1", "t2"],
    "route_mappings": {"t1": "t2", "t2": "t1"},
    "max_hops": 10,
    "endpoints": {
        name: {"class": "actors.builtin.MemoryTransport", "config": {"auto_ack": False, "loopback": True}}
        for name in ("t1", "t2")
    },
}


def test_a_transport_to_transport_loop_is_stopped_by_the_hop_count_with_a_failure_record(ray_session: None) -> None:
    dep = Deployment.start(LOOP, name="loop", health_interval=1.0)
    try:
        t1, t2 = dep.endpoint("t1"), dep.endpoint("t2")
        first = ray.get(t1.inject.remote("round and round", wait=True), timeout=30)
        records = wait_for(lambda: dep.failures(), 30)
        (record,) = records
        assert record["error_type"] == "RoutingLoop" and record["stage"] == "validate"
        assert record["reason"] == "routing loop: message passed through the dispatcher 11 times (max_hops 10)"
        assert record["endpoint"] == "t1" and record["message"]["content"] == "round and round"
        assert record["message"]["routing_metadata"]["hops"] == 10

        counts = [ray.get(t.wait_for_sent.remote(5, 5), timeout=10) for t in (t1, t2)]
        time.sleep(1.0)  # the loop has stopped: nothing more is sent
        again = [ray.get(t.sent.remote(), timeout=10) for t in (t1, t2)]
        assert [len(c) for c in counts] == [len(a) for a in again] == [5, 5]
        assert {m["content"] for c in again for m in c} == {"round and round"}
        ids = [m["message_id"] for c in again for m in c]
        assert first["message_id"] in ids and len(set(ids)) == 10, "each hop back in is a new message"
        assert len(dep.failures()) == 1
    finally:
        dep.shutdown(timeout=10)
