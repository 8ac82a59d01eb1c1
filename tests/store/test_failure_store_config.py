"""The failure_store: config block picks where dead letters live."""

from __future__ import annotations

import uuid

import pytest
from redis_server import RedisServer

from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.stores.redis_failures import RedisFailureStore
from ray_dispatch.testing import MemoryOutbox, make_inbound


def _config(failure_store: dict[str, object]) -> dict[str, object]:
    return {
        "router_class": "routers.SimpleDispatchRouter",
        "transport_names": ["sms", "fax"],
        "exposed_names": ["app"],
        "route_mappings": {"sms": "app"},
        "failure_store": failure_store,
    }


async def test_failure_records_kept_in_redis_outlive_the_dispatcher(redis_server: RedisServer) -> None:
    config = _config(
        {
            "class": "ray_dispatch.redis_failures.RedisFailureStore",
            "url": redis_server.url,
            "prefix": uuid.uuid4().hex,
        }
    )
    first = Dispatcher(config, MemoryOutbox())
    await first.start()
    assert isinstance(first.failures, RedisFailureStore)
    await first.dispatch_inbound_message(make_inbound("lost", transport_name="fax"))
    await first.stop()
    second = Dispatcher(config, MemoryOutbox())
    await second.start()
    [record] = await second.failures.list()
    assert record.endpoint == "fax" and "route_mappings" in record.reason
    await second.stop()


def test_a_failure_store_class_of_the_wrong_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"failure_store\.class: 'ray_dispatch.store.MemoryStore' is not a subclass"):
        Dispatcher(_config({"class": "ray_dispatch.store.MemoryStore"}), MemoryOutbox())


def test_unknown_failure_store_options_are_named() -> None:
    with pytest.raises(ConfigError, match=r"failure_store: .*refused the options \['colour'\]"):
        Dispatcher(_config({"class": "ray_dispatch.failures.MemoryFailureStore", "colour": "red"}), MemoryOutbox())
