"""allowed_class_prefixes: configs from less trusted hands may only load classes under given prefixes."""

from __future__ import annotations

from typing import Any

import pytest

from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.testing import MemoryOutbox

CONFIG: dict[str, Any] = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
}


def test_a_router_outside_the_allowed_prefixes_is_refused_by_name() -> None:
    config = {**CONFIG, "router_class": "tests.core.helpers.SomeRouter"}
    with pytest.raises(ConfigError, match=r"router_class: class 'tests.core.helpers.SomeRouter' is refused"):
        Dispatcher(config, MemoryOutbox(), allowed_class_prefixes=["mycompany"])


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"store": {"class": "collections.Counter"}}, "store.class"),
        ({"failure_store": {"class": "collections.Counter"}}, "failure_store.class"),
        ({"middleware": [{"mw": "logging.Handler"}]}, "middleware.mw"),
    ],
)
def test_store_and_middleware_classes_are_covered_too(extra: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: class '[\w.]+' is refused"):
        Dispatcher({**CONFIG, **extra}, MemoryOutbox(), allowed_class_prefixes=["mycompany"])


def test_our_own_classes_always_load() -> None:
    config = {**CONFIG, "store": {"class": "ray_dispatch.store.MemoryStore"}}
    dispatcher = Dispatcher(config, MemoryOutbox(), allowed_class_prefixes=["mycompany"])
    assert type(dispatcher.router).__name__ == "SimpleDispatchRouter"
