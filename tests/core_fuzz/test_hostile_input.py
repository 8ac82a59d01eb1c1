"""Hostile input into the dispatcher core (no Ray): nothing raises, nothing valid is lost.

Hypothesis generates batches of malformed payloads (wrong types, missing
fields, 1 MB strings, invalid UTF-8, invalid JSON, unknown endpoints,
non-dict payloads, non-str keys, deep nesting) interleaved with valid
messages, and sends them through a ``RouterHarness`` over
``SimpleDispatchRouter``. Every hostile message must become exactly one
failure record with a bounded, JSON-serialisable record (or ``InvalidMessage``
from the parse-only ``message_from_json``); every valid message, outbound
message and event must arrive exactly once. Deeply nested metadata, which
message validation accepts today, must either arrive once or fail once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core_fuzz.strategies import APP, TRANSPORT, Case, batch
from ray_dispatch.core.errors import InvalidMessage
from ray_dispatch.core.message import Message, message_from_json
from ray_dispatch.core.stores.failures import MAX_REASON_CHARS
from ray_dispatch.testing import RouterHarness, make_ack

CONFIG = {
    "router_class": "routers.simple.SimpleDispatchRouter",
    "transport_names": [TRANSPORT],
    "exposed_names": [APP],
    "route_mappings": {TRANSPORT: APP},
}
HOSTILE_TARGET = 10_000
BATCH_SIZE = 125
EXAMPLES = 130  # 16,250 cases, about seven in ten hostile


class Tally:
    """What was sent, counted across every generated batch."""

    def __init__(self) -> None:
        self.hostile: Counter[str] = Counter()
        self.valid = 0

    @property
    def hostile_total(self) -> int:
        return sum(self.hostile.values())


def message_id(payload: Any) -> str:
    return str(payload["message_id"])


def check_parse(case: Case) -> None:
    """The parse-only API: valid JSON parses to the same message, anything else is InvalidMessage."""
    if case.valid:
        parsed = message_from_json(case.payload)
        assert parsed.to_json() == case.payload
        return
    with pytest.raises(InvalidMessage, match="invalid"):
        message_from_json(case.payload)


async def send_batch(cases: list[Case], tally: Tally) -> None:
    """Send ``cases`` (plus an ack for each valid outbound message) and check every outcome."""
    expected: Counter[tuple[str, str, str]] = Counter()  # (direction, endpoint, id) -> times
    acks: list[Any] = []
    lenient_delivered = 0
    async with RouterHarness(CONFIG) as harness:
        for case in cases:
            if case.api == "parse":
                check_parse(case)
            else:
                outcome = await harness.dispatcher.dispatch(case.direction, case.payload, case.endpoint)  # type: ignore[arg-type]
                if case.lenient and not outcome.failures:
                    assert outcome.destinations == [APP]
                    expected[case.direction, APP, message_id(case.payload)] += 1
                    lenient_delivered += 1
                elif case.valid:
                    assert outcome.failures == [], (case.kind, [f.reason for f in outcome.failures])
                    target = TRANSPORT if case.direction == "outbound" else APP
                    assert outcome.destinations == [target]
                    expected[case.direction, target, message_id(case.payload)] += 1
                    if case.direction == "outbound":
                        acks.append(make_ack(message_id(case.payload), transport_name=TRANSPORT))
                else:
                    assert outcome.deliveries == [], case.kind
                    (record,) = outcome.failures
                    assert record.reason and len(record.reason) <= MAX_REASON_CHARS + 40
                    assert record.error_type is not None
                    assert json.dumps(record.to_dict())
            if case.valid:
                tally.valid += 1
            else:
                tally.hostile[case.kind] += 1
            while acks and len(acks) > 1:  # events for earlier outbound messages, interleaved
                event = acks.pop(0)
                outcome = await harness.dispatch_event(event, TRANSPORT)
                assert outcome.destinations == [APP], [f.reason for f in outcome.failures]
                expected["event", APP, event.event_id] += 1
        for event in acks:
            await harness.dispatch_event(event, TRANSPORT)
            expected["event", APP, event.event_id] += 1

        delivered: Counter[tuple[str, str, str]] = Counter()
        for (direction, endpoint), messages in harness.outbox.delivered.items():
            for msg in messages:
                assert isinstance(msg, Message)
                key = msg["event_id"] if direction == "event" else msg["message_id"]
                delivered[direction, endpoint, key] += 1
        assert delivered == expected  # every valid message exactly once, nothing else
        hostile_dispatched = sum(1 for c in cases if not c.valid and c.api == "dispatch")
        assert len(harness.failures) == hostile_dispatched - lenient_delivered


def test_ten_thousand_hostile_payloads_never_crash_and_valid_ones_all_arrive() -> None:
    tally = Tally()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        # No shrinking: it takes minutes on 125-case batches of 1 MB strings; failures print the batch as is.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(cases=batch(BATCH_SIZE))
    def run(cases: list[Case]) -> None:
        asyncio.run(send_batch(cases, tally))

    run()
    print(f"hostile payloads: {tally.hostile_total} {dict(tally.hostile)}; valid messages: {tally.valid}")
    assert tally.hostile_total >= HOSTILE_TARGET, tally.hostile
    assert tally.valid > 1000
    kinds = {"wrong_type", "missing_field", "unknown_endpoint", "non_dict", "non_str_key"}
    kinds |= {"invalid_utf8", "deep_nesting", "bad_json"}
    assert set(tally.hostile) == kinds  # every kind of hostility was exercised


@given(payload=st.one_of(st.binary(max_size=64), st.text(max_size=64)))
@settings(max_examples=300, deadline=None)
def test_message_from_json_raises_only_invalid_message(payload: bytes | str) -> None:
    with contextlib.suppress(InvalidMessage):  # anything else escaping is the failure
        message_from_json(payload)
