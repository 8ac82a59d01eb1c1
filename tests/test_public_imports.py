"""Names users import or write in configs keep working after the core moved to ``ray_dispatch.core``."""

from __future__ import annotations

import importlib

import pytest

from ray_dispatch.core.config import resolve_class

OLD_PATHS = [
    ("ray_dispatch.testing", ["RouterHarness", "MemoryOutbox", "make_inbound", "make_ack", "make_nack"]),
    ("ray_dispatch.message", ["TransportUserMessage", "TransportEvent", "Message"]),
    ("ray_dispatch.errors", ["ConfigError", "InvalidMessage", "NoRoute", "DropMessage"]),
    ("ray_dispatch.middleware", ["BaseMiddleware", "LoggingMiddleware", "MiddlewareConfig"]),
    ("ray_dispatch.router", ["BaseDispatchRouter", "RouterConfig", "TransportName", "ExposedName"]),
    ("ray_dispatch.config", ["DispatcherConfig", "load_config", "resolve_class"]),
    ("ray_dispatch.store", ["RoutingStore", "MemoryStore"]),
    ("ray_dispatch.failures", ["FailureRecord", "FailureStore", "MemoryFailureStore"]),
    ("ray_dispatch.redis_store", ["RedisStore"]),
    ("ray_dispatch.redis_failures", ["RedisFailureStore"]),
    ("ray_dispatch.experiments", ["explain", "replay", "diff", "draw"]),
    ("ray_dispatch", ["BaseDispatchRouter", "RouterConfig", "NoRoute", "ExposedName", "load_config"]),
]


@pytest.mark.parametrize(("module", "names"), OLD_PATHS, ids=[m for m, _ in OLD_PATHS])
def test_old_import_paths_still_give_the_same_objects(module: str, names: list[str]) -> None:
    old = importlib.import_module(module)
    for name in names:
        assert hasattr(old, name), f"{module}.{name} is gone"
    # the same object, not a copy: isinstance checks and pickles agree across old and new paths
    if module == "ray_dispatch.message":
        from ray_dispatch.core.message import TransportUserMessage

        assert old.TransportUserMessage is TransportUserMessage


@pytest.mark.parametrize(
    "path",
    [
        "ray_dispatch.redis_store.RedisStore",
        "ray_dispatch.redis_failures.RedisFailureStore",
        "ray_dispatch.store.MemoryStore",
        "ray_dispatch.failures.MemoryFailureStore",
        "ray_dispatch.middleware.LoggingMiddleware",
        "vumi.middleware.LoggingMiddleware",
        "actors.builtin.MemoryTransport",
        "actors.builtin.EchoApplication",
        "actors.transports.smpp.SmppTransport",
    ],
)
def test_class_paths_written_in_configs_still_resolve(path: str) -> None:
    assert isinstance(resolve_class(path, "class"), type)
