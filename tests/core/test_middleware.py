"""Middleware: Vumi's hook order and priorities, fallbacks, async hooks, contract errors, config, logging."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ray_dispatch.core.errors import ConfigError
from ray_dispatch.middleware import BaseMiddleware, LoggingMiddleware
from ray_dispatch.testing import RouterHarness, make_ack, make_inbound

from . import helpers
from .helpers import (
    AsyncTagger,
    ConsumeOnly,
    Dropper,
    Exploding,
    InboundFallbackOnly,
    OutboundAndEventFallbacks,
    ReturnsDictOnPublish,
    ReturnsNone,
    Strict,
    Tagger,
    class_path,
    simple_config,
    trail,
)


def with_middleware(*entries: dict[str, Any], **blocks: Any) -> dict[str, Any]:
    return simple_config(middleware=list(entries), **blocks)


def tagger(name: str, **spec: Any) -> dict[str, Any]:
    if spec:
        return {name: {"class": class_path(Tagger), **spec}}
    return {name: class_path(Tagger)}


# -- order ------------------------------------------------------------------------


async def test_consume_runs_in_config_order_and_publish_in_reverse() -> None:
    async with RouterHarness(with_middleware(tagger("a"), tagger("b"), tagger("c"))) as h:
        await h.dispatch_inbound(make_inbound(transport_name="sms"))
        reply = h.inbound_to("app1")[0].reply("r")
        await h.dispatch_outbound(reply, "app1")
        await h.dispatch_event(make_ack(h.outbound_to("sms")[0]))

    (delivered,) = h.inbound_to("app1")
    assert trail(delivered) == [
        "a:consume_inbound",
        "b:consume_inbound",
        "c:consume_inbound",
        "c:publish_inbound",
        "b:publish_inbound",
        "a:publish_inbound",
    ]
    (sent,) = h.outbound_to("sms")
    assert trail(sent)[-6:] == [
        "a:consume_outbound",
        "b:consume_outbound",
        "c:consume_outbound",
        "c:publish_outbound",
        "b:publish_outbound",
        "a:publish_outbound",
    ]
    (event,) = h.events_to("app1")
    assert trail(event) == [
        "a:consume_event",
        "b:consume_event",
        "c:consume_event",
        "c:publish_event",
        "b:publish_event",
        "a:publish_event",
    ]


async def test_priorities_reorder_hooks_lower_first_ties_keep_vumi_order() -> None:
    config = with_middleware(
        tagger("a", consume_priority=2, publish_priority=-1),
        tagger("b"),
        tagger("c", consume_priority=1),
    )
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound(transport_name="sms"))

    assert trail(h.inbound_to("app1")[0]) == [
        "b:consume_inbound",  # priority 0
        "c:consume_inbound",  # priority 1
        "a:consume_inbound",  # priority 2
        "a:publish_inbound",  # publish priority -1
        "c:publish_inbound",  # ties at 0 in reversed config order: c before b
        "b:publish_inbound",
    ]


async def test_setup_runs_in_config_order_and_teardown_in_reverse() -> None:
    helpers.TEARDOWN_ORDER.clear()
    async with RouterHarness(with_middleware(tagger("a"), tagger("b"))) as h:
        first, second = h.dispatcher.middleware.middlewares
        assert first.calls == ["setup"] and second.calls == ["setup"]  # type: ignore[attr-defined]
    assert helpers.TEARDOWN_ORDER == ["b", "a"]
    assert first.calls == ["setup", "teardown"]  # type: ignore[attr-defined]


# -- fallbacks and async ---------------------------------------------------------------


async def test_handle_inbound_is_the_fallback_for_both_inbound_hooks() -> None:
    async with RouterHarness(with_middleware({"fb": class_path(InboundFallbackOnly)})) as h:
        await h.dispatch_inbound(make_inbound(transport_name="sms"))
        await h.dispatch_outbound(make_inbound(transport_name="sms"), "app1")

    assert trail(h.inbound_to("app1")[0]) == ["inbound@sms", "inbound@app1"]
    assert trail(h.outbound_to("sms")[0]) == []  # outbound hooks untouched


async def test_handle_outbound_and_handle_event_are_fallbacks() -> None:
    async with RouterHarness(with_middleware({"fb": class_path(OutboundAndEventFallbacks)})) as h:
        await h.dispatch_outbound(make_inbound(transport_name="sms"), "app2")
        await h.dispatch_event(make_ack(h.outbound_to("sms")[0]))

    assert trail(h.outbound_to("sms")[0]) == ["outbound@app2", "outbound@sms"]
    assert trail(h.events_to("app2")[0]) == ["event@sms", "event@app2"]


async def test_overriding_one_hook_leaves_the_others_alone() -> None:
    async with RouterHarness(with_middleware({"c": class_path(ConsumeOnly)})) as h:
        await h.dispatch_inbound(make_inbound(transport_name="sms"))
    assert trail(h.inbound_to("app1")[0]) == ["consume-only"]


async def test_async_hooks_and_async_setup_and_teardown() -> None:
    async with RouterHarness(with_middleware({"as": class_path(AsyncTagger)})) as h:
        await h.dispatch_inbound(make_inbound(transport_name="sms"))
        (mw,) = h.dispatcher.middleware.middlewares
        assert mw.ready is True  # type: ignore[attr-defined]
    assert trail(h.inbound_to("app1")[0]) == ["async@sms", "async@app1"]
    assert mw.ready is False  # type: ignore[attr-defined]


# -- contract errors become failure records; others still flow ---------------------------------


async def test_hook_returning_none_is_a_failure_record_naming_the_middleware() -> None:
    async with RouterHarness(with_middleware({"guard": class_path(ReturnsNone)})) as h:
        outcome = await h.dispatch_inbound(make_inbound("bad", transport_name="sms"))
        await h.dispatch_inbound(make_inbound("good", transport_name="sms"))

    (record,) = h.failures
    assert outcome.failures == [record] and outcome.deliveries == []
    assert "middleware 'guard' handle_consume_inbound returned None" in record.reason
    assert record.error_type == "MiddlewareError" and record.stage == "middleware"
    assert record.direction == "inbound" and record.endpoint == "sms"
    assert record.message.content == "bad"
    assert [m.content for m in h.inbound_to("app1")] == ["good"]


async def test_publish_hook_returning_a_non_message_fails_only_that_copy() -> None:
    async with RouterHarness(with_middleware({"odd": class_path(ReturnsDictOnPublish)})) as h:
        outcome = await h.dispatch_inbound(make_inbound(transport_name="xmpp"))

    assert outcome.destinations == ["app1"]
    (record,) = h.failures
    assert "middleware 'odd' handle_publish_inbound returned a dict" in record.reason
    assert record.stage == "publish" and record.destination == "app2" and record.endpoint == "xmpp"
    assert h.inbound_to("app2") == []


async def test_unexpected_middleware_error_is_a_failure_record() -> None:
    async with RouterHarness(with_middleware({"bang": class_path(Exploding)})) as h:
        outcome = await h.dispatch_inbound(make_inbound(transport_name="sms"))
    (record,) = outcome.failures
    assert record.reason == "RuntimeError: middleware exploded" and record.stage == "middleware"
    assert h.inbound_to("app1") == []


async def test_drop_message_drops_on_purpose_without_a_failure() -> None:
    async with RouterHarness(with_middleware({"filter": class_path(Dropper)})) as h:
        spam = await h.dispatch_inbound(make_inbound("spam", transport_name="sms"))
        fanned = await h.dispatch_inbound(make_inbound("ok", transport_name="xmpp"))
        stats = h.dispatcher.stats

    assert spam.dropped == "spam filter" and spam.deliveries == [] and spam.failures == []
    assert fanned.destinations == ["app1"] and fanned.dropped == "app2 is muted" and fanned.failures == []
    assert h.failures == []
    assert [m.content for m in h.inbound_to("app1")] == ["ok"] and h.inbound_to("app2") == []
    assert stats.dropped == {"spam filter": 1, "app2 is muted": 1}


# -- config ------------------------------------------------------------------------------


async def test_own_config_block_is_read_from_the_top_level() -> None:
    config = with_middleware(tagger("t1"), tagger("t2"), t1={"label": "first"})
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound(transport_name="sms"))
        t1, t2 = h.dispatcher.middleware.middlewares
    assert t1.config.label == "first" and t2.config.label is None
    assert trail(h.inbound_to("app1")[0])[:2] == ["first:consume_inbound", "t2:consume_inbound"]


def test_invalid_own_config_names_the_middleware_the_key_and_the_value() -> None:
    config = with_middleware({"strict": class_path(Strict)}, strict={"limit": "lots"})
    with pytest.raises(ConfigError, match=r"middleware 'strict'.*limit.*'lots'"):
        RouterHarness(config)


def test_own_config_block_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"strict: middleware config must be a mapping \(got 3\)"):
        RouterHarness(with_middleware({"strict": class_path(Strict)}, strict=3))


@pytest.mark.parametrize(
    "entry",
    [
        {"logger": "vumi.middleware.LoggingMiddleware"},
        {"logger": "vumi.middleware.logging.LoggingMiddleware"},
        {"logger": "ray_dispatch.middleware.LoggingMiddleware"},
        {"logger": {"class": "vumi.middleware.logging.LoggingMiddleware", "consume_priority": 3}},
    ],
)
def test_both_vumi_config_forms_and_vumi_paths(entry: dict[str, Any]) -> None:
    h = RouterHarness(with_middleware(entry))
    (mw,) = h.dispatcher.middleware.middlewares
    assert isinstance(mw, LoggingMiddleware) and mw.name == "logger"
    spec = entry["logger"]
    assert mw.consume_priority == (spec["consume_priority"] if isinstance(spec, dict) else 0)


def test_priorities_in_the_middleware_list_win_over_the_block() -> None:
    # As Vumi: the list entry sets the priorities (0 for the short form).
    h = RouterHarness(with_middleware(tagger("t"), t={"consume_priority": 9}))
    assert h.dispatcher.middleware.middlewares[0].consume_priority == 0


@pytest.mark.parametrize("value", ["high", 1.5, None, [1]])
def test_middleware_priority_must_be_an_integer(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"middleware 'm'.*consume_priority"):
        BaseMiddleware("m", {"consume_priority": value}, dispatcher=None)


# -- LoggingMiddleware -----------------------------------------------------------------------------


async def test_logging_middleware_logs_every_hop(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ray_dispatch.messages")
    async with RouterHarness(with_middleware({"log": "vumi.middleware.LoggingMiddleware"})) as h:
        msg = make_inbound("log me", transport_name="sms")
        await h.dispatch_inbound(msg)

    lines = [r.getMessage() for r in caplog.records if r.name == "ray_dispatch.messages"]
    assert len(lines) == 2
    assert lines[0].startswith("consume inbound from sms: ")
    assert lines[1].startswith("publish inbound to app1: ")
    logged = json.loads(lines[0].split(": ", 1)[1])
    assert logged["content"] == "log me" and logged["message_id"] == msg.message_id
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "ray_dispatch.messages")


async def test_logging_middleware_level_and_logger_name(caplog: pytest.LogCaptureFixture) -> None:
    config = with_middleware({"log": class_path(LoggingMiddleware)}, log={"log_level": "debug", "logger_name": "mine"})
    caplog.set_level(logging.INFO)  # debug records are filtered out
    async with RouterHarness(config) as h:
        await h.dispatch_outbound(make_inbound(transport_name="sms"), "app1")
    assert [r for r in caplog.records if r.name == "mine"] == []

    caplog.set_level(logging.DEBUG, logger="mine")
    async with RouterHarness(config) as h:
        await h.dispatch_outbound(make_inbound(transport_name="sms"), "app1")
        await h.dispatch_event(make_ack(h.outbound_to("sms")[0]))
    mine = [r for r in caplog.records if r.name == "mine"]
    assert [r.getMessage().split(":")[0] for r in mine] == [
        "consume outbound from app1",
        "publish outbound to sms",
        "consume event from sms",
        "publish event to app1",
    ]
    assert all(r.levelno == logging.DEBUG for r in mine)


async def test_logging_middleware_never_refuses_a_message_it_cannot_encode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ray_dispatch.messages")
    async with RouterHarness(with_middleware({"log": class_path(LoggingMiddleware)})) as h:
        msg = make_inbound(transport_name="sms")
        msg["odd"] = {1, 2}  # item assignment is not validated: a middleware may still meet such values
        await h.dispatch_inbound(msg)
    assert len(h.inbound_to("app1")) == 1 and h.failures == []
    assert "not JSON-encodable" in caplog.records[0].getMessage()


def test_logging_middleware_refuses_an_unknown_level_at_config_time() -> None:
    config = with_middleware({"log": class_path(LoggingMiddleware)}, log={"log_level": "loud"})
    with pytest.raises(ConfigError, match=r"middleware 'log'.*log_level.*'loud'"):
        RouterHarness(config)
