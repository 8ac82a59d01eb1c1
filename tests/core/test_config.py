"""Dispatcher config: dicts and YAML files (safe_load only), Vumi aliases, and errors naming file, key and value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ray_dispatch.core.batching import BLOB_HEADROOM, RAY_INLINE_LIMIT
from ray_dispatch.core.config import DispatcherConfig, load_config, resolve_class, vumi_alias
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.router import BaseDispatchRouter
from ray_dispatch.core.stores.routing import MemoryStore
from ray_dispatch.middleware import BaseMiddleware, LoggingMiddleware
from ray_dispatch.testing import RouterHarness, make_inbound
from routers.simple import SimpleDispatchRouter

from .helpers import SetupRefusingRouter, class_path, simple_config


def write_yaml(tmp_path: Path, data: Any, name: str = "dispatcher.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# -- loading ------------------------------------------------------------------------


def test_load_from_a_dict() -> None:
    config = load_config(simple_config())
    assert config.router_class == "routers.SimpleDispatchRouter"
    assert config.transport_names == ["sms", "xmpp", "ussd"] and config.exposed_names == ["app1", "app2"]
    assert config.raw["route_mappings"] == {"sms": "app1", "xmpp": ["app1", "app2"]}
    assert config.source is None
    assert config.middleware == [] and config.max_hops == 10 and config.return_route_ttl == 7 * 24 * 3600


def test_load_from_a_yaml_file_as_str_or_path(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, simple_config())
    for source in (path, str(path)):
        config = load_config(source)
        assert config.source == str(path)
        assert config.raw["route_mappings"]["xmpp"] == ["app1", "app2"]


def test_an_existing_config_passes_through() -> None:
    config = load_config(simple_config())
    assert load_config(config) is config


def test_the_caller_dict_is_not_changed() -> None:
    raw = simple_config()
    before = repr(raw)
    load_config(raw)
    assert repr(raw) == before


@pytest.mark.parametrize("source", [42, None, ["router_class"]])
def test_a_source_that_is_neither_mapping_nor_path_is_refused(source: Any) -> None:
    with pytest.raises(ConfigError, match="a config must be a mapping or a YAML file path"):
        load_config(source)


# -- YAML safety and YAML errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['echo pwned']\n",
        "router_class: !!python/name:os.system\ntransport_names: [sms]\n",
        "router_class: !!python/object:routers.simple.SimpleDispatchRouter {}\ntransport_names: [sms]\n",
    ],
)
def test_python_tags_are_refused_by_safe_load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not valid YAML")
    assert "could not determine a constructor for the tag" in str(info.value)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=rf"^{path}: cannot read config file"):
        load_config(path)


def test_broken_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("router_class: routers.SimpleDispatchRouter\ntransport_names: [sms\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: not valid YAML: line 3, column 1: "):
        load_config(path)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("", "NoneType")])
def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: a dispatcher config must be a YAML mapping \(got {kind}\)"):
        load_config(path)


def test_non_string_top_level_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("1: one\nrouter_class: routers.SimpleDispatchRouter\ntransport_names: [sms]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}: invalid dispatcher config: top-level key 1 is not a string"):
        load_config(path)


# -- dispatcher keys: every error names the key and the value ---------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"router_class": 5}, "router_class: Input should be a valid string (got 5)"),
        (
            {"transport_names": "sms"},
            "transport_names: must be a list of endpoint names, not a single string (got 'sms')",
        ),
        ({"transport_names": ["sms", 5]}, "transport_names.1: Input should be a valid string (got 5)"),
        ({"exposed_names": ["app1", "app1", "app2"]}, "exposed_names lists ['app1'] more than once"),
        ({"transport_names": ["sms", "sms"]}, "transport_names lists ['sms'] more than once"),
        ({"exposed_names": ["app1", "sms"]}, "['sms'] appear in both transport_names and exposed_names"),
        ({"transport_names": [], "exposed_names": []}, "transport_names and exposed_names are both empty"),
        ({"endpoints": {"sms": {}, "fax": {}}}, "endpoints ['fax'] are in neither transport_names nor exposed_names"),
        ({"return_route_ttl": 0}, "return_route_ttl: Input should be greater than 0 (got 0)"),
        ({"max_hops": 0}, "max_hops: Input should be greater than or equal to 1 (got 0)"),
        ({"store": "redis"}, "store: Input should be a valid dictionary"),
    ],
)
def test_invalid_dispatcher_keys_are_named(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    data = simple_config(**changes)
    with pytest.raises(ConfigError) as from_dict:
        load_config(data)
    assert str(from_dict.value).startswith("invalid dispatcher config: ")
    assert expected in str(from_dict.value)

    path = write_yaml(tmp_path, data)
    with pytest.raises(ConfigError) as from_file:
        load_config(path)
    assert str(from_file.value) == f"{path}: {from_dict.value}"


def test_missing_router_class_and_transport_names_are_named() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"exposed_names": ["app1"]})
    assert "router_class: Field required" in str(info.value)
    assert "transport_names: Field required" in str(info.value)


# -- middleware list forms ---------------------------------------------------------------------------


def test_middleware_list_accepts_both_vumi_forms() -> None:
    config = load_config(
        simple_config(
            middleware=[
                {"short": "vumi.middleware.LoggingMiddleware"},
                {"long": {"class": "ray_dispatch.middleware.LoggingMiddleware", "publish_priority": -2}},
            ]
        )
    )
    short, long = config.middleware
    assert (short.name, short.class_path, short.consume_priority, short.publish_priority) == (
        "short",
        "vumi.middleware.LoggingMiddleware",
        0,
        0,
    )
    assert (long.name, long.class_path, long.publish_priority) == (
        "long",
        "ray_dispatch.middleware.LoggingMiddleware",
        -2,
    )
    assert load_config(simple_config(middleware=None)).middleware == []


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        ({"log": "x.Y"}, "middleware: must be a list of {name: class} entries"),
        ([{"a": "x.Y", "b": "x.Z"}], "entry 0 must be a single {name: class} mapping"),
        (["x.Y"], "entry 0 must be a single {name: class} mapping (got 'x.Y')"),
        ([{"log": {"consume_priority": 1}}], "entry 'log' must be a class path or a mapping with a 'class' key"),
        ([{"log": 5}], "entry 'log' must be a class path or a mapping with a 'class' key (got 5)"),
        ([{"log": {"class": "x.Y", "consume_priority": "high"}}], "middleware.0.consume_priority"),
        ([{"log": {"class": "x.Y", "consume_prority": 1}}], "unknown key; did you mean 'consume_priority'?"),
        ([{"log": "x.Y"}, {"log": "x.Z"}], "middleware names must be unique"),
    ],
)
def test_bad_middleware_entries_are_named(middleware: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(simple_config(middleware=middleware))
    assert str(info.value).startswith("invalid dispatcher config: ")
    assert expected in str(info.value)


def test_middleware_config_block() -> None:
    config = load_config(simple_config(log={"log_level": "debug"}, other=None))
    assert config.middleware_config("log") == {"log_level": "debug"}
    assert config.middleware_config("absent") == {}
    assert config.middleware_config("other") == {}


# -- class resolution and Vumi aliases ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vumi_path", "ours"),
    [
        ("vumi.dispatchers.SimpleDispatchRouter", "routers.SimpleDispatchRouter"),
        ("vumi.dispatchers.base.SimpleDispatchRouter", "routers.SimpleDispatchRouter"),
        ("vumi.dispatchers.base.ContentKeywordRouter", "routers.ContentKeywordRouter"),
        ("vumi.dispatchers.base.RedirectOutboundRouter", "routers.RedirectOutboundRouter"),
        ("vumi.dispatchers.load_balancer.LoadBalancingRouter", "routers.LoadBalancingRouter"),
        ("vumi.middleware.LoggingMiddleware", "ray_dispatch.middleware.LoggingMiddleware"),
        ("vumi.middleware.logging.LoggingMiddleware", "ray_dispatch.middleware.LoggingMiddleware"),
        ("routers.SimpleDispatchRouter", "routers.SimpleDispatchRouter"),
        ("mycompany.routing.Custom", "mycompany.routing.Custom"),
        ("vumi.transports.smpp.SmppTransport", "actors.transports.vumi.VumiSmppTransport"),
        ("vumi.transports.telnet.TelnetServerTransport", "actors.transports.vumi.VumiTelnetTransport"),
        ("vumi.transports.irc.IrcTransport", "vumi.transports.irc.IrcTransport"),
    ],
)
def test_vumi_alias(vumi_path: str, ours: str) -> None:
    assert vumi_alias(vumi_path) == ours


@pytest.mark.parametrize(
    "path",
    [
        "vumi.dispatchers.SimpleDispatchRouter",
        "vumi.dispatchers.base.SimpleDispatchRouter",
        "routers.simple.SimpleDispatchRouter",
    ],
)
def test_vumi_router_paths_resolve_to_ours(path: str) -> None:
    assert resolve_class(path, "router_class", BaseDispatchRouter) is SimpleDispatchRouter


def test_vumi_middleware_paths_resolve_to_ours() -> None:
    assert resolve_class("vumi.middleware.LoggingMiddleware", "m", BaseMiddleware) is LoggingMiddleware


async def test_a_vumi_config_routes_unchanged() -> None:
    config = simple_config(router_class="vumi.dispatchers.base.SimpleDispatchRouter")
    async with RouterHarness(config) as h:
        await h.dispatch_inbound(make_inbound("hi", transport_name="sms"))
    assert [m.content for m in h.inbound_to("app1")] == ["hi"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "routers.NoSuchRouter",
            "router_class: 'routers.NoSuchRouter' is not a builtin class; the builtin ones are ContentKeywordRouter,",
        ),
        ("no_such_package.Router", "router_class: cannot import module 'no_such_package' for 'no_such_package.Router'"),
        ("SimpleDispatchRouter", "router_class: expected a dotted class path"),
        (".SimpleDispatchRouter", "router_class: expected a dotted class path"),
        ("routers.", "router_class: expected a dotted class path"),
        (
            "ray_dispatch.store.MemoryStore",
            "'ray_dispatch.store.MemoryStore' is not a subclass of ray_dispatch.core.router.BaseDispatchRouter",
        ),
        ("routers.simple.as_list", "module 'routers.simple' has no class 'as_list'"),
        ("vumi.dispatchers.SimpleDispatchRoutr", "did you mean 'SimpleDispatchRouter'?"),
        (
            "vumi.dispatchers.base.NoSuchRouter",
            "router_class: Vumi's vumi.dispatchers.base.NoSuchRouter is not available in ray_dispatch; available",
        ),
    ],
)
def test_unknown_router_class_is_named(tmp_path: Path, path: str, expected: str) -> None:
    with pytest.raises(ConfigError) as from_dict:
        RouterHarness(simple_config(router_class=path))
    assert expected in str(from_dict.value)

    yaml_path = write_yaml(tmp_path, simple_config(router_class=path))
    with pytest.raises(ConfigError) as from_file:
        RouterHarness(yaml_path)
    assert str(from_file.value).startswith(f"{yaml_path}: ") and expected in str(from_file.value)


def test_a_module_that_fails_to_import_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_router_module.py").write_text("raise RuntimeError('import-time failure')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(
        ConfigError, match=r"router_class: cannot import module 'broken_router_module'.*import-time failure"
    ):
        resolve_class("broken_router_module.Router", "router_class")


def test_allowed_prefixes_are_whole_module_components() -> None:
    allowed = ["mycompany", "collections."]
    assert resolve_class("collections.OrderedDict", "k", allowed_prefixes=allowed).__name__ == "OrderedDict"
    assert resolve_class("vumi.middleware.LoggingMiddleware", "k", allowed_prefixes=allowed) is LoggingMiddleware
    with pytest.raises(ConfigError, match=r"k: class 'mycompany_evil.Router' is refused"):
        resolve_class("mycompany_evil.Router", "k", allowed_prefixes=allowed)
    with pytest.raises(ConfigError, match=r"k: class 'routers_evil.Router' is refused"):
        resolve_class("routers_evil.Router", "k", allowed_prefixes=allowed)


# -- router and middleware config errors name file, key and value ------------------------------------------


def test_router_config_error_names_file_key_and_value(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, simple_config(route_mappings={"sms": "app9"}))
    with pytest.raises(ConfigError) as info:
        RouterHarness(path)
    text = str(info.value)
    assert text.startswith(f"{path}: invalid SimpleDispatchRouter config: ")
    assert "route_mappings.sms.0: 'app9' is not in exposed_names ['app1', 'app2'] (got 'app9')" in text


def test_router_config_naming_an_unknown_transport(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, simple_config(route_mappings={"fax": "app1"}))
    with pytest.raises(ConfigError, match=r"route_mappings.fax: 'fax' is not in transport_names"):
        RouterHarness(path)


def test_middleware_errors_name_the_file(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path, simple_config(middleware=[{"log": "vumi.middleware.LoggingMiddleware"}], log={"log_level": "x"})
    )
    with pytest.raises(ConfigError, match=rf"^{path}: invalid config of middleware 'log': log_level: .*\(got 'x'\)"):
        RouterHarness(path)
    path = write_yaml(tmp_path, simple_config(middleware=[{"m": "no_such.Middleware"}]), "m.yaml")
    with pytest.raises(ConfigError, match=rf"^{path}: middleware.m: cannot import module 'no_such'"):
        RouterHarness(path)


async def test_config_refused_at_setup_names_the_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, simple_config(router_class=class_path(SetupRefusingRouter), target="app2"))
    harness = RouterHarness(path)
    with pytest.raises(ConfigError, match=rf"^{path}: target: 'app2' refused at setup"):
        async with harness:
            pass


def test_router_config_is_checked_against_endpoints_before_any_message() -> None:
    with pytest.raises(ConfigError, match=r"target: 'nobody' is not in exposed_names"):
        RouterHarness(simple_config(router_class=class_path(SetupRefusingRouter), target="nobody"))


# -- store block ------------------------------------------------------------------------------------------


def test_store_defaults_to_memory_and_can_be_named() -> None:
    assert isinstance(RouterHarness(simple_config()).dispatcher.store, MemoryStore)
    named = RouterHarness(simple_config(store={"class": "ray_dispatch.store.MemoryStore"}))
    assert isinstance(named.dispatcher.store, MemoryStore)
    with pytest.raises(
        ConfigError, match=r"store.class: 'ray_dispatch.middleware.LoggingMiddleware' is not a subclass"
    ):
        RouterHarness(simple_config(store={"class": "ray_dispatch.middleware.LoggingMiddleware"}))


def test_store_options_the_class_refuses_are_a_config_error(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, simple_config(store={"class": "ray_dispatch.store.MemoryStore", "url": "redis://x"}))
    with pytest.raises(
        ConfigError,
        match=rf"^{path}: store: ray_dispatch.store.MemoryStore refused the options \['url'\]",
    ):
        RouterHarness(path)


def test_dispatcher_config_model_is_public() -> None:
    config = DispatcherConfig.model_validate({"router_class": "routers.SimpleDispatchRouter", "transport_names": ["t"]})
    assert config.exposed_names == [] and config.store.class_path == "ray_dispatch.store.MemoryStore"


# -- the deployment sections: one typed model --------------------------------------


def test_every_endpoint_gets_a_typed_spec_and_batching_is_a_model() -> None:
    config = load_config(
        simple_config(
            endpoints={"sms": {"class": "actors.builtin.MemoryTransport", "batching": {"max_batch": 10}}, "app1": None},
            dispatcher={"replicas": 2, "batching": None},
        )
    )
    assert set(config.endpoints) == {"sms", "xmpp", "ussd", "app1", "app2"}
    assert config.endpoints["sms"].batching.max_batch == 10 and config.endpoints["sms"].batching.max_queued == 2_000
    assert config.endpoints["app1"].class_path is None and config.endpoints["app1"].config == {}
    assert config.dispatcher.replicas == 2 and config.dispatcher.batching.max_batch == 1000
    assert (config.dispatcher.call_deadline, config.dispatcher.probe_timeout) == (2.0, 1.0)  # fail over within ~4 s


def test_the_batch_size_keys_are_read_and_the_byte_cap_defaults_under_rays_inline_limit() -> None:
    batching = {"max_batch": 2000, "max_batch_bytes": 65_536, "max_in_flight_items": 3000}
    config = load_config(simple_config(endpoints={"sms": {"batching": batching}}, dispatcher={"batching": batching}))
    for options in (config.endpoints["sms"].batching, config.dispatcher.batching):
        assert (options.max_batch, options.max_batch_bytes, options.max_in_flight_items) == (2000, 65_536, 3000)
    assert config.endpoints["xmpp"].batching.max_batch_bytes == RAY_INLINE_LIMIT - BLOB_HEADROOM


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"endpoints": {"sms": {"batching": {"max_queue": 5}}}},
            "endpoints.sms.batching.max_queue: unknown key; did you mean 'max_queued'?",
        ),
        ({"endpoints": {"sms": {"replica": 2}}}, "endpoints.sms.replica: unknown key; did you mean 'replicas'?"),
        (
            {"dispatcher": {"batching": {"max_batchh": 5}}},
            "dispatcher.batching.max_batchh: unknown key; did you mean 'max_batch'?",
        ),
        (
            {"endpoints": {"sms": {"actor_options": {"num_cpu": 1}}}},
            "unsupported actor option 'num_cpu'; did you mean 'num_cpus'?",
        ),
        (
            {"endpoints": {"sms": {"batching": {"max_batch": 0}}}},
            "endpoints.sms.batching.max_batch: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"endpoints": {"sms": {"batching": {"max_batch_bytes": 0}}}},
            "endpoints.sms.batching.max_batch_bytes: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"endpoints": {"sms": {"batching": {"max_in_flight_items": 0}}}},
            "endpoints.sms.batching.max_in_flight_items: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"dispatcher": {"batching": {"max_batch_byte": 1}}},
            "dispatcher.batching.max_batch_byte: unknown key; did you mean 'max_batch_bytes'?",
        ),
        (
            {"dispatcher": {"call_deadline": -1}},
            "dispatcher.call_deadline: Input should be greater than or equal to 0 (got -1)",
        ),
        (
            {"dispatcher": {"probe_timeout": 0}},
            "dispatcher.probe_timeout: Input should be greater than 0 (got 0)",
        ),
        ({"endpoints": ["sms"]}, "endpoints: must be a mapping of endpoint name to spec"),
        ({"endpoints": {"nobody": {}}}, "endpoints ['nobody'] are in neither transport_names nor exposed_names"),
        ({"exposed_names": ["dispatcher"]}, "'dispatcher' cannot be an endpoint name"),
    ],
)
def test_the_deployment_sections_are_checked_on_load(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(simple_config(**change))
    assert expected in str(info.value)


def test_transport_or_application_is_asked_of_the_config() -> None:
    config = load_config(simple_config())
    assert [config.role(name) for name in ("sms", "app1")] == ["transport", "application"]
    assert config.is_transport("xmpp") and not config.is_transport("app2")
    assert config.endpoint_names == ["sms", "xmpp", "ussd", "app1", "app2"]
    with pytest.raises(ConfigError, match="unknown endpoint 'nope'"):
        config.role("nope")
