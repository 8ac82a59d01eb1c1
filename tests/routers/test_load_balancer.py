"""LoadBalancingRouter: round-robin outbound, reply affinity through helper_metadata, renaming."""

from __future__ import annotations

import logging

from ray_dispatch.testing import RouterHarness, make_ack, make_inbound

TRANSPORTS = ("smpp1", "smpp2", "smpp3")


def balancer_config(router_config, **keys):
    return router_config("LoadBalancingRouter", transports=TRANSPORTS, exposed=("app",), **keys)


def stack(msg):
    return msg.helper_metadata["load_balancer"]["transport_names"]


def routes(h):
    return {name: [m.content for m in h.outbound_to(name)] for name in TRANSPORTS}


async def test_outbound_round_robins_and_renames(router_config):
    async with RouterHarness(balancer_config(router_config)) as h:
        for n in range(5):
            await h.dispatch_outbound(make_inbound(f"m{n}", transport_name="app"), "app")
        assert routes(h) == {"smpp1": ["m0", "m3"], "smpp2": ["m1", "m4"], "smpp3": ["m2"]}
        assert {m.transport_name for m in h.outbound_to("smpp2")} == {"smpp2"}


async def test_inbound_and_events_reach_the_app_renamed_with_the_transport_pushed(router_config):
    async with RouterHarness(balancer_config(router_config)) as h:
        await h.dispatch_inbound(make_inbound("in", transport_name="smpp2"))
        await h.dispatch_event(make_ack("unknown", transport_name="smpp3"))
        (received,) = h.inbound_to("app")
        assert received.transport_name == "app" and stack(received) == ["smpp2"]
        (event,) = h.events_to("app")
        assert event.transport_name == "app"


async def test_replies_go_back_through_the_transport_they_came_from(router_config):
    async with RouterHarness(balancer_config(router_config)) as h:
        for name in ("smpp3", "smpp3", "smpp2"):
            await h.dispatch_inbound(make_inbound(f"via {name}", transport_name=name))
        for received in h.inbound_to("app"):
            await h.dispatch_outbound(received.reply(f"re {received.content}"), "app")
        assert routes(h) == {"smpp1": [], "smpp2": ["re via smpp2"], "smpp3": ["re via smpp3", "re via smpp3"]}
        assert stack(h.outbound_to("smpp2")[0]) == []


async def test_affinity_stack_nests_under_an_outer_balancer(router_config):
    async with RouterHarness(balancer_config(router_config)) as h:
        outer = {"load_balancer": {"transport_names": ["outer_lb"]}}
        await h.dispatch_inbound(make_inbound("nested", transport_name="smpp1", helper_metadata=outer))
        (received,) = h.inbound_to("app")
        assert stack(received) == ["outer_lb", "smpp1"]
        await h.dispatch_outbound(received.reply("back"), "app")
        (sent,) = h.outbound_to("smpp1")
        assert stack(sent) == ["outer_lb"]


async def test_malformed_affinity_metadata_is_replaced(router_config):
    async with RouterHarness(balancer_config(router_config)) as h:
        await h.dispatch_inbound(make_inbound(transport_name="smpp2", helper_metadata={"load_balancer": "junk"}))
        await h.dispatch_inbound(
            make_inbound(transport_name="smpp3", helper_metadata={"load_balancer": {"transport_names": 7}})
        )
        assert [stack(m) for m in h.inbound_to("app")] == [["smpp2"], ["smpp3"]]
        assert h.failures == []


async def test_reply_with_unknown_transport_falls_back_to_round_robin_with_warning(router_config, caplog):
    async with RouterHarness(balancer_config(router_config)) as h:
        stray = make_inbound("stray", helper_metadata={"load_balancer": {"transport_names": ["gone"]}})
        bare = make_inbound("bare")
        with caplog.at_level(logging.WARNING, logger="routers"):
            await h.dispatch_outbound(stray.reply("r1"), "app")
            outcome = await h.dispatch_outbound(bare.reply("r2"), "app", trace=True)
        assert routes(h) == {"smpp1": ["r1"], "smpp2": ["r2"], "smpp3": []}
        assert "unknown load balancer transport 'gone'" in caplog.text
        assert "unknown load balancer transport None" in caplog.text
        assert any("carries no known transport name; round-robin -> 'smpp2'" in s for s in outcome.trace)
        assert h.failures == []


async def test_without_reply_affinity_replies_round_robin(router_config):
    async with RouterHarness(balancer_config(router_config, reply_affinity=False)) as h:
        for _ in range(3):
            await h.dispatch_inbound(make_inbound("in", transport_name="smpp3"))
        assert all("load_balancer" not in m.helper_metadata for m in h.inbound_to("app"))
        for n, received in enumerate(h.inbound_to("app")):
            await h.dispatch_outbound(received.reply(f"r{n}"), "app")
        assert routes(h) == {"smpp1": ["r0"], "smpp2": ["r1"], "smpp3": ["r2"]}


async def test_without_rewriting_transport_names_are_kept(router_config):
    async with RouterHarness(balancer_config(router_config, rewrite_transport_names=False)) as h:
        await h.dispatch_inbound(make_inbound("in", transport_name="smpp2"))
        await h.dispatch_event(make_ack("unknown", transport_name="smpp2"))
        await h.dispatch_outbound(make_inbound("out", transport_name="app"), "app")
        assert h.inbound_to("app")[0].transport_name == "smpp2"
        assert h.events_to("app")[0].transport_name == "smpp2"
        assert h.outbound_to("smpp1")[0].transport_name == "app"


async def test_event_for_a_sent_message_returns_renamed(router_config):
    async with RouterHarness(balancer_config(router_config)) as h:
        sent = make_inbound("out", transport_name="app")
        await h.dispatch_outbound(sent, "app")
        await h.dispatch_event(make_ack(sent, transport_name="smpp1"))
        (event,) = h.events_to("app")
        assert (event.user_message_id, event.transport_name) == (sent.message_id, "app")


async def test_bad_config_names_the_key(router_config, config_error):
    await config_error(
        router_config("LoadBalancingRouter", transports=TRANSPORTS), "exposed_names", "exactly one exposed name"
    )
    await config_error(
        router_config("LoadBalancingRouter", transports=(), exposed=("app",)),
        "transport_names",
        "at least one transport name",
    )
    await config_error(balancer_config(router_config, reply_affinity="maybe"), "reply_affinity", "'maybe'")


async def test_singular_rewrite_key_is_flagged(router_config, caplog):
    with caplog.at_level(logging.WARNING, logger="routers"):
        async with RouterHarness(balancer_config(router_config, rewrite_transport_name=False)) as h:
            await h.dispatch_inbound(make_inbound(transport_name="smpp1"))
            assert h.inbound_to("app")[0].transport_name == "app"
    assert "'rewrite_transport_names' (plural)" in caplog.text
