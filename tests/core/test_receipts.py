"""Receipts and ``Dispatcher.settle``: confirmations as values, the same settle code in the harness and on Ray."""

from __future__ import annotations

import asyncio
from typing import Any

from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.errors import DeliveryError
from ray_dispatch.core.message import Message
from ray_dispatch.core.receipts import CONFIRMED, BatchReceipt, Refused, Slot
from ray_dispatch.core.stores.failures import Direction
from ray_dispatch.testing import MemoryOutbox, RouterHarness, make_inbound
from ray_dispatch.tools.explain import Explanation


class PendingOutbox:
    """Hands out an unresolved future per delivery (as the Ray pools do); the test settles them."""

    def __init__(self) -> None:
        self.receipts: dict[str, asyncio.Future[Any]] = {}

    async def deliver(self, direction: Direction, endpoint: str, message: Message) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.receipts[endpoint] = future
        return future


class SharedReceiptOutbox:
    """Gives every delivery the same receipt, as one receipt per destination batch would."""

    def __init__(self) -> None:
        self.receipt: asyncio.Future[Any] | None = None

    async def deliver(self, direction: Direction, endpoint: str, message: Message) -> asyncio.Future[Any]:
        if self.receipt is None:
            self.receipt = asyncio.get_running_loop().create_future()
        return self.receipt


async def test_memory_outbox_receipts_are_already_settled(config: dict[str, Any]) -> None:
    outbox = MemoryOutbox()
    message = make_inbound(transport_name="sms")
    receipt = await outbox.deliver("inbound", "app1", message)
    assert receipt is CONFIRMED and outbox.delivered["inbound", "app1"] == [message]
    outbox.refuse("app2", "app2 is down")
    refused = await outbox.deliver("inbound", "app2", message)
    assert isinstance(refused, Refused) and ("inbound", "app2") not in outbox.delivered
    async with RouterHarness(config) as h:
        outcome = await h.dispatch_inbound(make_inbound(transport_name="xmpp"))
    assert outcome.settled and [d.receipt for d in outcome.deliveries] == [CONFIRMED, CONFIRMED]


async def test_a_late_refusal_is_recorded_at_stage_deliver_when_settled(config: dict[str, Any]) -> None:
    outbox = PendingOutbox()
    dispatcher = Dispatcher(config, outbox)
    await dispatcher.start()
    outcome = await dispatcher.route("inbound", make_inbound("fan", transport_name="xmpp"), "xmpp", trace=True)
    assert sorted(outbox.receipts) == ["app1", "app2"] and not outcome.settled
    assert dispatcher.stats.published == {} and outcome.failures == []  # handed over, not yet confirmed

    outbox.receipts["app1"].set_result(True)
    outbox.receipts["app2"].set_exception(DeliveryError("delivery to 'app2' failed after 8 attempt(s)"))
    late = await dispatcher.settle(outcome)

    (record,) = late
    assert (record.stage, record.endpoint, record.destination, record.error_type) == (
        "deliver",
        "xmpp",
        "app2",
        "DeliveryError",
    )
    assert record.reason == "delivery to 'app2' failed after 8 attempt(s)"
    assert outcome.failures == [record] and [d.failure for d in outcome.deliveries] == [None, record]
    assert await dispatcher.failures.list() == [record]
    assert dispatcher.stats.to_dict()["published"] == {"inbound:app1": 1}
    assert dispatcher.stats.to_dict()["failed"] == {"inbound:app2": 1}
    assert outcome.trace is not None and outcome.trace[-1].kind == "failure"
    assert "failure delivering to 'app2'" in outcome.trace[-1]


async def test_a_late_refusal_in_the_harness_takes_the_same_path(config: dict[str, Any]) -> None:
    async with RouterHarness(config) as h:
        h.outbox.refuse("app2", ConnectionError("app2 took it and crashed"))
        outcome = await h.dispatch_inbound(make_inbound("fan", transport_name="xmpp"), trace=True)
    (record,) = h.failures
    assert (record.stage, record.destination, record.reason) == ("deliver", "app2", "app2 took it and crashed")
    assert outcome.failures == [record] and outcome.destinations == ["app1", "app2"]
    assert [m.content for m in h.inbound_to("app1")] == ["fan"] and h.inbound_to("app2") == []
    assert h.dispatcher.stats.to_dict()["published"] == {"inbound:app1": 1}
    explained = Explanation.from_outcome(outcome)
    assert explained.destinations == ["inbound:app1"]
    assert explained.result.endswith("failed at deliver (to 'app2'): app2 took it and crashed")


async def test_published_is_counted_once_however_often_an_outcome_is_settled(config: dict[str, Any]) -> None:
    outbox = PendingOutbox()
    dispatcher = Dispatcher(config, outbox)
    await dispatcher.start()
    outcome = await dispatcher.route("inbound", make_inbound(transport_name="sms"), "sms")
    outbox.receipts["app1"].set_result(True)
    await dispatcher.settle(outcome)
    await dispatcher.settle(outcome, outcome)
    assert dispatcher.stats.to_dict()["published"] == {"inbound:app1": 1}

    harness_side = Dispatcher(config, MemoryOutbox())
    await harness_side.start()
    settled = await harness_side.dispatch("inbound", make_inbound(transport_name="sms"), "sms")
    assert await harness_side.settle(settled) == []
    assert harness_side.stats.to_dict()["published"] == {"inbound:app1": 1}


async def settle_one_sms(config: dict[str, Any], outbox: Any) -> tuple[Dispatcher, asyncio.Future[Any]]:
    """Route one message from ``sms`` through ``outbox`` and start settling it (one loop turn in)."""
    dispatcher = Dispatcher(config, outbox)
    await dispatcher.start()
    outcome = await dispatcher.route("inbound", make_inbound(transport_name="sms"), "sms")
    settling = asyncio.ensure_future(dispatcher.settle(outcome))
    await asyncio.sleep(0)
    return dispatcher, settling


async def test_settle_waits_for_receipts_that_are_still_open(config: dict[str, Any]) -> None:
    outbox = PendingOutbox()
    dispatcher, settling = await settle_one_sms(config, outbox)
    assert not settling.done() and dispatcher.stats.published == {}
    outbox.receipts["app1"].set_result(True)
    assert await settling == [] and dispatcher.stats.to_dict()["published"] == {"inbound:app1": 1}


async def test_one_receipt_shared_by_the_copies_of_a_batch_settles_each_copy(config: dict[str, Any]) -> None:
    outbox = SharedReceiptOutbox()
    dispatcher = Dispatcher(config, outbox)
    await dispatcher.start()
    outcomes = [
        await dispatcher.route("inbound", make_inbound(str(n), transport_name="xmpp"), "xmpp") for n in range(3)
    ]
    assert outbox.receipt is not None
    outbox.receipt.set_exception(DeliveryError("the batch was lost"))
    late = await dispatcher.settle(*outcomes)
    assert len(late) == 6 and {r.destination for r in late} == {"app1", "app2"}
    assert [len(o.failures) for o in outcomes] == [2, 2, 2] and dispatcher.stats.published == {}


async def test_replaying_a_late_failure_that_fails_again_counts_the_attempt(config: dict[str, Any]) -> None:
    outbox = MemoryOutbox()
    dispatcher = Dispatcher(config, outbox)
    await dispatcher.start()
    outbox.refuse("app1", "still down")
    (first,) = (await dispatcher.dispatch("inbound", make_inbound(transport_name="sms"), "sms")).failures
    replayed = await dispatcher.replay_failure(first.failure_id)
    (again,) = replayed.failures
    assert (again.stage, again.attempts) == ("deliver", 2)
    assert [r.failure_id for r in await dispatcher.failures.list()] == [again.failure_id]
    outbox.refuse("app1", None)
    done = await dispatcher.replay_failure(again.failure_id)
    assert done.failures == [] and await dispatcher.failures.list() == []
    assert dispatcher.stats.to_dict()["published"] == {"inbound:app1": 1}


class BatchingOutbox:
    """Collects deliveries into one ``BatchReceipt`` per destination, as the Ray outbox does, until ``flush``."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[list[Message], BatchReceipt]] = {}
        self.flushed: list[tuple[str, list[Message], BatchReceipt]] = []

    async def deliver(self, direction: Direction, endpoint: str, message: Message) -> Slot:
        messages, receipt = self.open.setdefault(endpoint, ([], BatchReceipt()))
        messages.append(message)
        return receipt.add()

    async def flush(self) -> None:
        for endpoint, (messages, receipt) in self.open.items():
            receipt.submitted = True
            self.flushed.append((endpoint, messages, receipt))
        self.open.clear()


async def test_one_batch_receipt_per_destination_settles_each_copy_with_its_own_refusal(
    config: dict[str, Any],
) -> None:
    outbox = BatchingOutbox()
    dispatcher = Dispatcher(config, outbox)
    await dispatcher.start()
    outcomes = [
        await dispatcher.route("inbound", make_inbound(str(n), transport_name="xmpp"), "xmpp") for n in range(3)
    ]
    await dispatcher.flush()
    assert [(e, [m.content for m in ms]) for e, ms, _ in outbox.flushed] == [
        ("app1", ["0", "1", "2"]),
        ("app2", ["0", "1", "2"]),
    ]
    (_, _, app1), (_, _, app2) = outbox.flushed
    settling = asyncio.ensure_future(dispatcher.settle(*outcomes))
    app1.settle(range(3))
    await asyncio.sleep(0)
    assert not settling.done(), "app2's batch is not confirmed yet"
    app2.settle([0, 2])
    app2.settle([1], DeliveryError("app2 refused it: full"))
    (record,) = await settling
    assert (record.stage, record.destination, record.reason) == ("deliver", "app2", "app2 refused it: full")
    assert record.message.content == "1" and outcomes[1].failures == [record]
    assert dispatcher.stats.to_dict()["published"] == {"inbound:app1": 3, "inbound:app2": 2}


async def test_settle_hands_over_a_destination_batch_that_was_not_flushed(config: dict[str, Any]) -> None:
    outbox = BatchingOutbox()
    dispatcher, settling = await settle_one_sms(config, outbox)
    assert [e for e, _, _ in outbox.flushed] == ["app1"], "settle flushed the outbox rather than wait forever"
    outbox.flushed[0][2].settle([0])
    assert await settling == [] and dispatcher.stats.to_dict()["published"] == {"inbound:app1": 1}
