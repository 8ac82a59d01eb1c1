"""draw(): the topology as SVG; every endpoint name and edge is in the SVG text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.router import BaseDispatchRouter, StaticRoute
from ray_dispatch.tools import draw

SVG = "{http://www.w3.org/2000/svg}"


def groups(svg: str, cls: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if cls in g.get("class", "").split()]


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def test_seed_config_has_every_endpoint_edge_and_route(examples):
    svg = draw(examples / "seed.yaml").to_svg()
    nodes = {g.get("data-endpoint"): texts(g)[0] for g in groups(svg, "node") if g.get("data-endpoint")}
    assert nodes == {  # the seed's endpoints: block gives my_application 2 replicas
        "smpp_transport": "smpp_transport",
        "xmpp_transport": "xmpp_transport",
        "my_application": "my_application \u00d72",
    }
    edges = {g.get("data-endpoint"): (g.get("class"), texts(g)) for g in groups(svg, "edge")}
    assert edges == {
        "smpp_transport": ("edge transport", ["smpp_transport"]),
        "xmpp_transport": ("edge transport", ["xmpp_transport"]),
        "my_application": ("edge application", ["my_application"]),
    }
    routes = {(g.get("data-from"), g.get("data-to")) for g in groups(svg, "route")}
    assert routes == {("smpp_transport", "my_application"), ("xmpp_transport", "my_application")}
    assert "Dispatcher: SimpleDispatchRouter" in svg and "seed.yaml" in svg


def test_fan_out_and_unrouted_transport(simple_config):
    svg = draw(simple_config).to_svg()
    routes = sorted((g.get("data-from"), g.get("data-to")) for g in groups(svg, "route"))
    assert routes == [("sms", "app1"), ("xmpp", "app1"), ("xmpp", "app2")]
    assert set(route_reasons(svg).values()) == {"inbound: route_mappings"}
    unrouted = [t for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == "unrouted"]
    assert len(unrouted) == 1 and unrouted[0].text == "no route"


def route_reasons(svg: str) -> dict[tuple[str | None, str | None], str]:
    """Each drawn route (from, to) and the directions and config entries in its tooltip."""
    reasons = {}
    for g in groups(svg, "route"):
        title = g.find(f"{SVG}title")
        assert title is not None and title.text is not None
        reasons[g.get("data-from"), g.get("data-to")] = title.text.rpartition(" (")[2].rstrip(")")
    return reasons


def test_content_keyword_routes_by_keyword_fallback_and_from_addr(examples):
    topology = draw(examples / "multi_country.yaml")
    reasons = route_reasons(topology.to_svg())
    transports, apps = ["sms_ke", "sms_za", "sms_ng"], ["weather_app", "news_app", "football_app", "helpdesk"]
    by_keyword = {
        "football_app": "inbound: keyword 'score'",  # two rules, one route
        "news_app": "inbound: keyword 'news'",
        "weather_app": "inbound: keyword 'weather'",
        "helpdesk": "inbound: fallback_application",
    }
    by_from_addr = {"sms_ke": "outbound: from_addr '22141'", "sms_za": "outbound: from_addr '31337'"}
    by_from_addr["sms_ng"] = "outbound: from_addr '33001'"
    assert reasons == {
        **{(t, app): why for t in transports for app, why in by_keyword.items()},
        **{(app, t): why for app in apps for t, why in by_from_addr.items()},
    }
    assert "routes decided per message" not in topology.to_svg() and topology.router == "ContentKeywordRouter"


@pytest.mark.parametrize(
    ("router", "names", "config", "expected"),
    [
        (
            "TransportToTransportRouter",
            (["a", "b", "c"], []),
            {"route_mappings": {"a": ["b", "c"]}},
            {("a", "b"): "inbound: route_mappings", ("a", "c"): "inbound: route_mappings"},
        ),
        (
            "ToAddrRouter",
            (["sms"], ["app1", "app2"]),
            {"toaddr_mappings": {"app1": "^1", "app2": "^2"}},
            {("sms", "app1"): "inbound: to_addr ~ '^1'", ("sms", "app2"): "inbound: to_addr ~ '^2'"},
        ),
        (
            "FromAddrMultiplexRouter",
            (["x1", "x2"], ["app"]),
            {"fromaddr_mappings": {"a@x": "x1", "b@x": "x2"}},
            {
                ("x1", "app"): "inbound: any",
                ("x2", "app"): "inbound: any",
                ("app", "x1"): "outbound: from_addr 'a@x'",
                ("app", "x2"): "outbound: from_addr 'b@x'",
            },
        ),
        (
            "UserGroupingRouter",
            (["sms"], ["a", "b"]),
            {"group_mappings": {"g1": "a", "g2": "b"}, "route_mappings": {"sms": "a"}},
            {("sms", "a"): "inbound: group 'g1'; event: route_mappings", ("sms", "b"): "inbound: group 'g2'"},
        ),
        (
            "RedirectRouter",
            (["sms"], ["app"]),
            {"redirect_inbound": {"sms": "app"}, "redirect_outbound": {"app": "sms"}},
            {("sms", "app"): "inbound: redirect_inbound", ("app", "sms"): "outbound: redirect_outbound"},
        ),
        (
            "RedirectOutboundRouter",
            (["sms"], ["app"]),
            {"redirect_outbound": {"app": "sms"}},
            {("app", "sms"): "outbound: redirect_outbound"},
        ),
        (
            "LoadBalancingRouter",
            (["t1", "t2"], ["app"]),
            {},
            {
                ("t1", "app"): "inbound: any",
                ("t2", "app"): "inbound: any",
                ("app", "t1"): "outbound: round-robin",
                ("app", "t2"): "outbound: round-robin",
            },
        ),
    ],
)
def test_each_builtin_router_draws_the_routes_its_config_fixes(router, names, config, expected):
    transports, exposed = names
    full = {"router_class": f"routers.{router}", "transport_names": transports, "exposed_names": exposed, **config}
    assert route_reasons(draw(full).to_svg()) == expected


class PairRouter(BaseDispatchRouter):
    """A custom router that names its one fixed route."""

    @classmethod
    def static_routes(cls, config, transport_names, exposed_names):
        return [StaticRoute(transport_names[0], exposed_names[-1], "inbound", "always the last app")]


class SilentRouter(BaseDispatchRouter):
    """A custom router that does not say."""


def test_a_custom_router_draws_what_its_hook_returns_and_one_without_it_draws_none(simple_config):
    here = "tests.experiments.test_experiment_draw"
    custom = draw({**simple_config, "router_class": f"{here}.PairRouter"})
    assert route_reasons(custom.to_svg()) == {("sms", "app2"): "inbound: always the last app"}
    silent = draw({**simple_config, "router_class": f"{here}.SilentRouter"})
    assert silent.routes is None and groups(silent.to_svg(), "route") == []
    assert "routes decided per message" in silent.to_svg()


def test_counts_and_replicas_are_labelled(simple_config):
    counts = {"inbound:app1": 1200, "inbound:app2": 3, "sms": 5, "unknown:thing": 9}
    svg = draw(simple_config, counts=counts, replicas={"app2": 3}, title="live").to_svg()
    by_endpoint = {g.get("data-endpoint"): texts(g) for g in groups(svg, "edge")}
    assert by_endpoint["app1"] == ["app1", "1,200 msgs"] and by_endpoint["sms"] == ["sms", "5 msgs"]
    assert by_endpoint["xmpp"] == ["xmpp"]
    (app2,) = [g for g in groups(svg, "node") if g.get("data-endpoint") == "app2"]
    assert texts(app2) == ["app2 \u00d73"] and len(list(app2.iter(f"{SVG}rect"))) == 3
    assert ">live<" in svg


def test_names_are_escaped(simple_config):
    config = {**simple_config, "transport_names": ["sms", "xmpp", "a<b&c"], "route_mappings": {"a<b&c": "app1"}}
    svg = draw(config).to_svg()
    ET.fromstring(svg)  # still well-formed
    assert "a&lt;b&amp;c" in svg and "a<b&c" not in svg


def test_replicas_default_from_the_endpoints_block(simple_config):
    config = {**simple_config, "endpoints": {"app1": {"class": "actors.builtin.EchoApplication", "replicas": 2}}}
    topology = draw(config)
    assert topology.replicas == {"app1": 2} and topology.classes == {"app1": "EchoApplication"}
    assert "EchoApplication" in topology._repr_svg_()


def test_invalid_config_is_a_config_error(simple_config):
    with pytest.raises(ConfigError, match="route_mappings"):
        draw({**simple_config, "route_mappings": {"sms": "nobody"}})


def test_save_svg_png_and_unknown_suffix(simple_config, tmp_path):
    topology = draw(simple_config)
    written = topology.save(tmp_path / "t.svg")
    assert written.read_text(encoding="utf-8") == topology.to_svg()
    with pytest.raises(ValueError, match=r"name the file \.svg or \.png"):
        topology.save(tmp_path / "t.gif")
    pytest.importorskip("resvg_py")
    png = topology.save(tmp_path / "t.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
