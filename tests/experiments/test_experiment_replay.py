"""replay(): recorded traffic through a config; counts equal what the harness delivers."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest

from ray_dispatch.core.config import load_config
from ray_dispatch.testing import RouterHarness, make_ack, make_inbound
from ray_dispatch.tools import TrafficReader, replay, replay_async
from ray_dispatch.tools.progress import ProgressBar
from ray_dispatch.tools.replay import BAD_LINE_PREFIX
from ray_dispatch.tools.traffic import Arrival


def mixed_traffic() -> list:
    """Inbound on every transport (one unmapped), replies from apps, acks for them, and junk."""
    items: list = []
    for i in range(30):
        transport = ("sms", "xmpp", "ussd")[i % 3]
        items.append(make_inbound(f"m{i}", transport_name=transport, message_id=f"in-{i}"))
    for i in range(6):
        reply = make_inbound(f"r{i}", transport_name="sms" if i % 2 else "nowhere", message_id=f"out-{i}")
        items.append({"endpoint": "app2", "direction": "outbound", "message": reply.to_dict()})
        items.append(make_ack(f"out-{i}", transport_name="sms"))
    items.append("")  # blank: skipped, keeps its line number
    items.append("{not json")
    items.append("[1, 2]")
    items.append({"endpoint": "sms", "direction": "sideways", "message": {}})
    items.append({"direction": "outbound", "message": make_inbound().to_dict()})
    items.append({"content": "no addresses", "transport_name": "sms"})  # invalid message: the dispatcher's failure
    return items


async def harness_counts(config, items) -> tuple[Counter, Counter]:
    """Dispatch the same traffic through RouterHarness one by one: delivered per destination, failures per reason."""
    reader = TrafficReader(load_config(config))
    delivered: Counter = Counter()
    async with RouterHarness(config) as h:
        for item in reader.read(_as_lines(items)):
            if isinstance(item, Arrival):
                await h.dispatcher.dispatch(item.direction, item.payload, item.endpoint)
        for (direction, endpoint), messages in h.outbox.delivered.items():
            delivered[f"{direction}:{endpoint}"] += len(messages)
        failures = Counter(f.reason for f in h.failures)
    return delivered, failures


def _as_lines(items):
    return [
        i if isinstance(i, str) else (i.to_json() if hasattr(i, "to_json") else json.dumps(i, default=str))
        for i in items
    ]


async def test_counts_equal_what_the_harness_delivered(simple_config, write_jsonl):
    items = mixed_traffic()
    path = write_jsonl(_as_lines(items))
    summary = await replay_async(simple_config, path)
    delivered, failures = await harness_counts(simple_config, items)
    assert summary.delivered == delivered
    assert summary.delivered == Counter({"inbound:app1": 20, "inbound:app2": 10, "outbound:sms": 3, "event:app2": 6})
    routed_failures = Counter({r: n for r, n in summary.failures.items() if not r.startswith(BAD_LINE_PREFIX)})
    assert routed_failures == failures
    assert summary.lines == len(items) - 1 and summary.bad_lines == 4 and summary.messages == len(items) - 5
    assert summary.failed == 10 + 3 + 4 + 1  # unmapped ussd, outbound to 'nowhere', bad lines, invalid message


def test_bad_lines_are_counted_with_their_line_numbers(simple_config, write_jsonl):
    items = mixed_traffic()
    summary = replay(simple_config, write_jsonl(_as_lines(items)))
    first_bad = len(items) - 5 + 1  # 1-based line of "{not json"
    assert summary.failure_lines[
        BAD_LINE_PREFIX + "not valid JSON (Expecting property name enclosed in double quotes)"
    ] == [first_bad]
    assert summary.failure_lines[BAD_LINE_PREFIX + "a traffic line must be a JSON object (got array)"] == [
        first_bad + 1
    ]
    direction = BAD_LINE_PREFIX + "'direction' must be one of inbound, event, outbound (got 'sideways')"
    assert summary.failure_lines[direction] == [first_bad + 2]
    needs = BAD_LINE_PREFIX + "an outbound record needs 'endpoint': the exposed name the application sent it from"
    assert summary.failure_lines[needs] == [first_bad + 3]
    (invalid,) = [r for r in summary.failures if r.startswith("invalid user_message")]
    assert "'to_addr'" in invalid and summary.failure_lines[invalid] == [first_bad + 4]
    unmapped = "no route_mappings entry for transport 'ussd' (inbound message)"
    assert summary.failures[unmapped] == 10 and summary.failure_lines[unmapped][:3] == [3, 6, 9]


def test_invalid_utf8_and_deep_nesting_are_bad_lines_not_crashes(simple_config, tmp_path):
    path = tmp_path / "junk.jsonl"
    good = make_inbound(transport_name="sms").to_json().encode()
    path.write_bytes(b"\xff\xfe junk\n" + b"[" * 100_000 + b"\n" + good + b"\n")
    summary = replay(simple_config, path)
    assert summary.delivered == Counter({"inbound:app1": 1})
    assert summary.failure_lines[BAD_LINE_PREFIX + "not valid UTF-8"] == [1]
    assert summary.bad_lines == 2 and summary.lines == 3


def test_replays_iterables_of_messages_and_caps_kept_line_numbers(simple_config):
    items = [make_inbound(f"{i}", transport_name="ussd") for i in range(30)]
    summary = replay(simple_config, items, max_lines_per_reason=5)
    reason = "no route_mappings entry for transport 'ussd' (inbound message)"
    assert summary.failures[reason] == 30 and summary.failure_lines[reason] == [1, 2, 3, 4, 5]
    assert items[0].routing_metadata == {}  # the caller's messages are not touched
    assert summary.traffic == "<30 items>" and "1, 2, 3, 4, 5, …" in summary.to_text()


def test_summary_renderings_and_endpoint_counts(simple_config, write_jsonl):
    path = write_jsonl([make_inbound(transport_name="xmpp"), make_inbound(transport_name="sms"), "oops"])
    summary = replay(simple_config, path)
    assert summary.endpoint_counts == {"xmpp": 1, "sms": 1, "app1": 2, "app2": 1}
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["delivered"] == {"inbound:app1": 2, "inbound:app2": 1}
    assert data["failures"] == [
        {"reason": BAD_LINE_PREFIX + "not valid JSON (Expecting value)", "count": 1, "lines": [3]}
    ]
    text = summary.to_text()
    assert "replayed 3 lines" in text and "inbound:app2" in text and "not valid JSON" in text
    html = summary._repr_html_()
    assert html.count("<tr>") == 1 + 2 + 1 and "inbound:app1" in html
    assert repr(summary).startswith("<ReplaySummary 3 lines: 3 delivered, 1 failed")


def test_progress_bar_draws_to_stderr(simple_config, write_jsonl, capsys):
    path = write_jsonl([make_inbound(transport_name="sms") for _ in range(2100)])
    summary = replay(simple_config, path, progress=True)
    err = capsys.readouterr().err
    assert summary.delivered["inbound:app1"] == 2100
    assert err.startswith("\r") and "[########################] 100% 2,100 lines" in err and err.endswith("\n")


def test_progress_bar_without_total():
    stream = io.StringIO()
    bar = ProgressBar("stream", None, unit="lines", stream=stream, interval=0)
    bar.update(10, 10)
    bar.close()
    assert stream.getvalue().startswith("\rstream 10 lines ") and "%" not in stream.getvalue()


def test_missing_traffic_file_raises_oserror(simple_config, tmp_path):
    with pytest.raises(OSError):
        replay(simple_config, tmp_path / "absent.jsonl")


def test_stateful_router_state_carries_across_lines(examples):
    """Acks find their way back to the app that sent the reply (return-route memory across lines)."""
    summary = replay(examples / "multi_country.yaml", examples / "traffic_multi_country.jsonl")
    replies = sum(n for k, n in summary.delivered.items() if k.startswith("outbound:"))
    acks = sum(n for k, n in summary.delivered.items() if k.startswith("event:"))
    assert replies == 40 and acks == 27 and summary.failed == 2


def test_same_result_with_and_without_the_fast_json_decoder(simple_config, write_jsonl, monkeypatch):
    import ray_dispatch.tools.traffic as traffic

    odd = make_inbound(transport_name="sms").to_dict()
    odd["timestamp"] = str(odd["timestamp"])
    lines = [
        *_as_lines(mixed_traffic()),
        json.dumps({**odd, "extra": float("nan")}),  # NaN: the standard library parses it; messages refuse it
        json.dumps({**odd, "extra": 2**80}),  # beyond 64 bits
        json.dumps(odd)[:-1] + ', "extra": "\\ud800"}',  # a lone surrogate
        '{"a": ' * 2000 + "1" + "}" * 2000,  # deeper than either decoder goes
    ]
    path = write_jsonl(lines)
    fast = replay(simple_config, path)
    monkeypatch.setattr(traffic, "_fast_loads", None)
    plain = replay(simple_config, path)
    assert fast.delivered == plain.delivered and fast.delivered["inbound:app1"] == 20 + 2
    assert fast.failures == plain.failures and fast.failure_lines == plain.failure_lines
    assert plain.failures[BAD_LINE_PREFIX + "not valid JSON (nested too deeply)"] == 1


def test_seed_example_traffic_routes_completely(examples):
    summary = replay(examples / "seed.yaml", examples / "traffic_seed.jsonl")
    assert summary.failures == Counter() and summary.lines == 90
    assert summary.delivered == Counter(
        {
            "inbound:my_application": 60,
            "outbound:smpp_transport": 10,
            "outbound:xmpp_transport": 5,
            "event:my_application": 15,
        }
    )
