"""Vumi configs: YAML quirks, classes we do not provide, endpoint dispatchers, ``!include``."""

from __future__ import annotations

from pathlib import Path

import pytest

import ray_dispatch.middleware
import routers
from ray_dispatch.core.config import load_config
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.vumi import OUR_MIDDLEWARE, our_routers
from ray_dispatch.testing import RouterHarness, make_inbound
from tests.vumi.fixtures import VUMI_ROUTER_CONFIGS

SIMPLE = """\
router_class: vumi.dispatchers.SimpleDispatchRouter
transport_names: [sms]
exposed_names: [app]
route_mappings: {sms: app}
"""


def write(tmp_path: Path, text: str, name: str = "dispatcher.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_tables_of_our_classes_match_the_packages() -> None:
    assert our_routers() == sorted(routers.__all__)
    assert set(OUR_MIDDLEWARE) == set(ray_dispatch.middleware.__all__) - {
        "BaseMiddleware",
        "MiddlewareConfig",
        "MiddlewareStack",
        "MessageStoreReader",
        "StoredMessage",
    }


# -- item 5: keys YAML reads as numbers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("router", "keys", "key"),
    [
        ("ContentKeywordRouter", "transport_mappings:\n  8282: sms\nfallback_application: app\n", "8282"),
        ("FromAddrMultiplexRouter", "fromaddr_mappings:\n  +31642500021: sms\n", "31642500021"),
        ("SimpleDispatchRouter", "route_mappings: {sms: app}\ntransport_mappings:\n  8282: sms\n", "8282"),
        ("ToAddrRouter", "toaddr_mappings:\n  app: '^1'\n  8282: '^2'\n", "8282"),
    ],
)
async def test_unquoted_numeric_key_is_refused_at_start_naming_it(
    tmp_path: Path, router: str, keys: str, key: str
) -> None:
    head = f"router_class: vumi.dispatchers.base.{router}\ntransport_names: [sms]\nexposed_names: [app]\n"
    path = write(tmp_path, head + keys)
    with pytest.raises(ConfigError) as info:
        async with RouterHarness(path):
            pass
    text = str(info.value)
    assert f"key {key} is a int, not text" in text and "quote the key" in text


async def test_quoted_keys_route() -> None:
    config = {
        "router_class": "vumi.dispatchers.base.FromAddrMultiplexRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app"],
        "fromaddr_mappings": {"+31642500021": "sms"},
    }
    async with RouterHarness(config) as h:
        await h.dispatch_outbound(make_inbound("x", from_addr="+31642500021"), "app")
        assert len(h.outbound_to("sms")) == 1


# -- item 6: Vumi classes we do not provide -----------------------------------------------------


async def test_unavailable_vumi_middleware_is_named_with_ours() -> None:
    config = {
        "router_class": "vumi.dispatchers.SimpleDispatchRouter",
        "transport_names": ["sms"],
        "exposed_names": ["app"],
        "route_mappings": {"sms": "app"},
        "middleware": [{"manhole": "vumi.middleware.manhole.ManholeMiddleware"}],
    }
    with pytest.raises(ConfigError) as info:
        RouterHarness(config)
    text = str(info.value)
    assert (
        "middleware.manhole: Vumi's vumi.middleware.manhole.ManholeMiddleware is not available in ray_dispatch" in text
    )
    assert "available middleware: vumi.middleware.logging.LoggingMiddleware" in text


async def test_unavailable_vumi_router_is_named_with_ours() -> None:
    with pytest.raises(ConfigError) as info:
        RouterHarness(
            {"router_class": "vumi.dispatchers.base.FancyRouter", "transport_names": ["sms"], "exposed_names": ["a"]}
        )
    assert "router_class: Vumi's vumi.dispatchers.base.FancyRouter is not available in ray_dispatch" in str(info.value)
    assert "available routers: ContentKeywordRouter, FromAddrMultiplexRouter," in str(info.value)


def test_endpoint_dispatcher_config_is_refused_as_such(tmp_path: Path) -> None:
    # vumi/dispatchers/tests/test_endpoint_dispatchers.py: RoutingTableDispatcher's config keys
    path = write(
        tmp_path,
        "receive_inbound_connectors: [transport1, transport2]\n"
        "receive_outbound_connectors: [app1, app2]\n"
        "routing_table:\n  transport1:\n    default: [app1, default]\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "'routing_table' is a key of Vumi's endpoint dispatchers" in text
    assert "does not support Vumi's endpoint dispatchers" in text and "router_class: Field required" not in text


def test_endpoint_dispatcher_class_is_refused_as_such() -> None:
    with pytest.raises(ConfigError, match="is an endpoint dispatcher: ray_dispatch does not support"):
        RouterHarness(
            {
                "router_class": "vumi.dispatchers.endpoint_dispatchers.RoutingTableDispatcher",
                "transport_names": ["sms"],
                "exposed_names": ["a"],
            }
        )


# -- item 7: !include ---------------------------------------------------------------------------------


async def test_include_is_read_relative_to_the_config_file(tmp_path: Path) -> None:
    write(tmp_path, "{sms: app}\n", "conf/parts/routes.yaml")
    path = write(tmp_path, SIMPLE.replace("{sms: app}", "!include parts/routes.yaml"), "conf/dispatcher.yaml")
    async with RouterHarness(path) as h:
        assert h.router.config.route_mappings == {"sms": ["app"]}
        await h.dispatch_inbound(make_inbound("hi", transport_name="sms"))
        assert len(h.inbound_to("app")) == 1


def test_include_outside_the_config_folder_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "{sms: app}\n", "secrets.yaml")
    path = write(tmp_path, SIMPLE.replace("{sms: app}", "!include ../secrets.yaml"), "conf/dispatcher.yaml")
    with pytest.raises(ConfigError, match=r"!include '\.\./secrets\.yaml': only files in the config's folder"):
        load_config(path)


def test_include_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "!include dispatcher.yaml\n", "loop.yaml")
    path = write(tmp_path, SIMPLE.replace("{sms: app}", "!include loop.yaml"))
    with pytest.raises(ConfigError, match=r"!include 'dispatcher.yaml': includes itself"):
        load_config(path)


def test_missing_include_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, SIMPLE.replace("{sms: app}", "!include nope.yaml"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "!include 'nope.yaml': cannot read" in str(info.value) and "\n" not in str(info.value)


def test_other_tags_are_still_refused(tmp_path: Path) -> None:
    path = write(tmp_path, SIMPLE + "x: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


# -- Vumi's own router test configs start ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore:RedirectOutboundRouter is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(VUMI_ROUTER_CONFIGS))
async def test_every_config_of_vumis_router_tests_starts_and_routes(name: str) -> None:
    config = VUMI_ROUTER_CONFIGS[name]
    transport = config["transport_names"][0]
    inbound = make_inbound("KEYWORD1 hi", to_addr="to:foo:1", from_addr="thing1@muxme", transport_name=transport)
    async with RouterHarness(config) as h:
        assert type(h.router).__name__ == config["router_class"].rpartition(".")[2]
        outcome = await h.dispatch_inbound(inbound)
        assert outcome.failures == [] and outcome.deliveries
