"""Vumi's builtin middleware under Vumi's class paths, with Vumi's keys, through the harness.

Configs follow the ones in Vumi's own tests (vumi/middleware/tests/test_*.py), e.g. the
tagger's ``addr_pattern: ^\\d+(\\d{3})$`` / ``mytag-\\1`` / ``msg_template: {from_addr: 1234*\\1}``.
"""

from __future__ import annotations

from typing import Any

import pytest

from ray_dispatch.core.errors import ConfigError
from ray_dispatch.middleware import MessageStoreReader, SessionLengthMiddleware
from ray_dispatch.testing import RouterHarness, make_ack, make_inbound

TAGGER = {
    "incoming": {"addr_pattern": r"^\d+(\d{3})$", "tagpool_template": "pool1", "tagname_template": r"mytag-\1"},
    "outgoing": {"tagname_pattern": r"mytag-(\d{3})$", "msg_template": {"from_addr": r"1234*\1"}},
}


def config(*middleware: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """A SimpleDispatchRouter config sms <-> app with the given (name, Vumi class path, block) middleware."""
    return {
        "router_class": "vumi.dispatchers.SimpleDispatchRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app"],
        "route_mappings": {"sms": "app"},
        "middleware": [{name: path} for name, path, _ in middleware],
        **{name: block for name, _, block in middleware},
    }


async def test_tagging_middleware_tags_inbound_and_fills_outbound_by_tag() -> None:
    async with RouterHarness(config(("tagger", "vumi.middleware.tagger.TaggingMiddleware", TAGGER))) as h:
        await h.dispatch_inbound(make_inbound("hi", to_addr="123456"))
        await h.dispatch_inbound(make_inbound("hi", to_addr="a1234"))
        tagged, untagged = h.inbound_to("app")
        assert tagged.helper_metadata["tag"] == {"tag": ["pool1", "mytag-456"]}
        assert "tag" not in untagged.helper_metadata

        await h.dispatch_outbound(tagged.reply("back"), "app")
        reply = tagged.reply("other")
        reply.helper_metadata["tag"] = {"tag": ["pool1", "othertag-456"]}
        await h.dispatch_outbound(reply, "app")
        assert [m.from_addr for m in h.outbound_to("sms")] == ["1234*456", "123456"]


async def test_tagging_middleware_needs_both_blocks() -> None:
    with pytest.raises(ConfigError, match=r"middleware 'tagger'.*outgoing"):
        RouterHarness(config(("tagger", "vumi.middleware.tagger.TaggingMiddleware", {"incoming": TAGGER["incoming"]})))


async def test_address_translation_maps_outbound_to_addr_and_inbound_from_addr() -> None:
    block = {"outbound_map": {"555OUT": "555IN"}}
    path = "vumi.middleware.address_translator.AddressTranslationMiddleware"
    async with RouterHarness(config(("translate", path, block))) as h:
        await h.dispatch_inbound(make_inbound("hi", from_addr="555IN"))
        await h.dispatch_inbound(make_inbound("hi", from_addr="777"))
        assert [m.from_addr for m in h.inbound_to("app")] == ["555OUT", "777"]
        await h.dispatch_outbound(h.inbound_to("app")[0].reply("back"), "app")
        assert h.outbound_to("sms")[0].to_addr == "555IN"


async def test_static_provider_is_set_both_ways() -> None:
    path = "vumi.middleware.provider_setter.StaticProviderSettingMiddleware"
    async with RouterHarness(config(("provider", path, {"provider": "MY-MNO"}))) as h:
        await h.dispatch_inbound(make_inbound("hi"))
        (inbound,) = h.inbound_to("app")
        reply = inbound.reply("back")
        reply["provider"] = None
        await h.dispatch_outbound(reply, "app")
        assert inbound.provider == "MY-MNO" and h.outbound_to("sms")[0].provider == "MY-MNO"


async def test_address_prefix_provider_longest_prefix_wins_with_normalisation() -> None:
    block = {
        "provider_prefixes": {"+27123": "MNO1", "+271234": "MNO2", "+2712": "MNO3"},
        "normalize_msisdn": {"country_code": "27"},
    }
    path = "vumi.middleware.provider_setter.AddressPrefixProviderSettingMiddleware"
    async with RouterHarness(config(("provider", path, block))) as h:
        for from_addr in ("+271234567", "0123567890", "+271299", "+4412345678", "12345"):
            await h.dispatch_inbound(make_inbound("hi", from_addr=from_addr))
        got = [(m.from_addr, m.provider) for m in h.inbound_to("app")]
        assert got == [
            ("+271234567", "MNO2"),
            ("0123567890", "MNO1"),  # normalised to +27123567890 for the check only
            ("+271299", "MNO3"),
            ("+4412345678", None),
            ("12345", None),  # a short code is not normalised
        ]


async def test_session_length_stamps_start_and_end_from_the_routing_store(monkeypatch: pytest.MonkeyPatch) -> None:
    times = iter([1000.0, 1042.5])
    monkeypatch.setattr(SessionLengthMiddleware, "clock", staticmethod(lambda: next(times)))
    path = "vumi.middleware.session_length.SessionLengthMiddleware"
    async with RouterHarness(config(("session", path, {"timeout": 60}))) as h:
        for event in ("new", "resume", "close", "resume"):
            await h.dispatch_inbound(make_inbound("x", to_addr="*120#", session_event=event))
        stamps = [m.helper_metadata.get("session") for m in h.inbound_to("app")]
    assert stamps == [
        {"session_start": 1000.0},
        {"session_start": 1000.0},
        {"session_start": 1000.0, "session_end": 1042.5},
        None,  # the close forgot the session
    ]


async def test_session_length_namespace_by_tag_needs_the_tagger_first() -> None:
    session = ("session", "vumi.middleware.SessionLengthMiddleware", {"namespace_type": "tag"})
    tagger = ("tagger", "vumi.middleware.TaggingMiddleware", TAGGER)
    async with RouterHarness(config(tagger, session)) as h:
        await h.dispatch_inbound(make_inbound("x", to_addr="123456", session_event="new"))
        await h.dispatch_inbound(make_inbound("x", to_addr="a1234", session_event="new"))  # no tag: passes as is
        tagged, untagged = h.inbound_to("app")
        assert isinstance(tagged.helper_metadata["session"]["session_start"], float)
        assert "session" not in untagged.helper_metadata
        key = "session_length:pool1:mytag-456:123456:session_created"
        assert await h.dispatcher.store.get(key) == tagged.helper_metadata["session"]["session_start"]


async def test_storing_middleware_keeps_messages_events_and_batches() -> None:
    path = "vumi.middleware.message_storing.StoringMiddleware"
    tagger = ("tagger", "vumi.middleware.tagger.TaggingMiddleware", TAGGER)
    block = {"store_prefix": "ms", "redis_manager": {"key_prefix": "vumi"}, "riak_manager": {"bucket_prefix": "v"}}
    async with RouterHarness(config(tagger, ("storing", path, block))) as h:
        await h.dispatch_inbound(make_inbound("hi", to_addr="123456"))
        (inbound,) = h.inbound_to("app")
        await h.dispatch_outbound(inbound.reply("back"), "app")
        (sent,) = h.outbound_to("sms")
        await h.dispatch_event(make_ack(sent, transport_name="sms"))

        reader = MessageStoreReader(h.dispatcher.store, "ms")
        stored_in = await reader.message(inbound.message_id)
        stored_out = await reader.message(sent.message_id)
        assert stored_in is not None and stored_out is not None
        assert stored_in.direction == "inbound" and stored_in.message["content"] == "hi" and stored_in.events == []
        assert stored_out.direction == "outbound" and stored_out.message["from_addr"] == "1234*456"
        assert [e["event_type"] for e in stored_out.events] == ["ack"]  # stored once, consumed and published
        assert await reader.batch("pool1:mytag-456") == [inbound.message_id, sent.message_id]
        assert await reader.message("nope") is None


async def test_storing_middleware_can_store_only_what_it_publishes() -> None:
    path = "vumi.middleware.StoringMiddleware"
    async with RouterHarness(config(("storing", path, {"store_on_consume": False}))) as h:
        await h.dispatch_inbound(make_inbound("hi"))
        await h.dispatch_inbound(make_inbound("lost", transport_name="fax"))  # consumed, never published
        reader = MessageStoreReader(h.dispatcher.store)
        (inbound,) = h.inbound_to("app")
        assert (await reader.message(inbound.message_id)) is not None
        lost = h.failures[0].message
        assert (await reader.message(lost["message_id"])) is None


async def test_tagging_middleware_refuses_a_bad_pattern_naming_it() -> None:
    block = {**TAGGER, "incoming": {**TAGGER["incoming"], "addr_pattern": "(unclosed"}}
    with pytest.raises(ConfigError, match=r"incoming\.addr_pattern"):
        RouterHarness(config(("tagger", "vumi.middleware.tagger.TaggingMiddleware", block)))
