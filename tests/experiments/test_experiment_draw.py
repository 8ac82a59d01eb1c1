"""draw(): the topology as SVG; every endpoint name and edge is in the SVG text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ray_dispatch.core.errors import ConfigError
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
    unrouted = [t for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == "unrouted"]
    assert len(unrouted) == 1 and unrouted[0].text == "no route"


def test_other_routers_get_an_edge_per_endpoint_and_no_routes(examples):
    topology = draw(examples / "multi_country.yaml")
    svg = topology.to_svg()
    names = ["sms_ke", "sms_za", "sms_ng", "weather_app", "news_app", "football_app", "helpdesk"]
    assert sorted(g.get("data-endpoint") for g in groups(svg, "edge")) == sorted(names)
    assert groups(svg, "route") == [] and "routes decided per message" in svg
    assert topology.routes is None and topology.router == "ContentKeywordRouter"


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
