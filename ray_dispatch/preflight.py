"""One check of a whole config, before anything starts (no Ray): ``preflight``.

``ray-dispatch validate``, ``ray-dispatch run`` and ``ray_dispatch.deploy()``
all call it first, so a bad config never starts Ray and always fails with the
same one line (a ``ConfigError`` naming the file, the key and the problem).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from actors.endpoint import ApplicationActor, EndpointActor, TransportActor
from ray_dispatch.core.config import DispatcherConfig, EndpointSpec, check_endpoint_config, load_config, resolve_class
from ray_dispatch.core.dispatcher import Dispatcher, build_store
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.harness import MemoryOutbox
from ray_dispatch.core.stores.failures import MemoryFailureStore
from ray_dispatch.core.stores.routing import MemoryStore

ConfigSource = Mapping[str, Any] | str | Path | DispatcherConfig
"""What a config can be given as: a mapping, a YAML file path, or a loaded config."""

ROLE_BASES: dict[str, type[EndpointActor]] = {"transport": TransportActor, "application": ApplicationActor}
"""The base class an endpoint's ``class`` must extend, per role."""


def preflight(config: ConfigSource, allowed_prefixes: Sequence[str] | None = None) -> DispatcherConfig:
    """Check everything a deployment of ``config`` would start, locally and without Ray; return the config.

    Loads and validates the config (every key, unknown ones refused), builds
    the router and the middleware and runs their setup and teardown (against
    in-memory stores), builds the routing and failure stores from their blocks
    (constructed only, not connected), and checks each endpoint's class (it
    exists and has the right role) and its own ``config``. With
    ``allowed_prefixes``, every class must live under one of them (or be ours).

    Raises:
        ConfigError: one line naming the file (if any), the key and the problem.
    """
    loaded = load_config(config)
    try:
        _check_router_and_middleware(loaded, allowed_prefixes)
        for key in ("store", "failure_store"):
            build_store(loaded, key, allowed_prefixes)
        for endpoint in loaded.endpoint_names:
            endpoint_class(loaded, endpoint, allowed_prefixes=allowed_prefixes)
    except ConfigError as exc:
        raise loaded.located(exc) from None
    return loaded


def endpoint_class(
    config: DispatcherConfig,
    endpoint: str,
    spec: EndpointSpec | None = None,
    allowed_prefixes: Sequence[str] | None = None,
) -> type[EndpointActor] | None:
    """Resolve the ``class`` of ``endpoint`` for its role and check its ``config``; None when it names none.

    ``spec`` is the endpoint's entry (default: the one in ``config``).

    Raises:
        ConfigError: the class is missing, refused, of the wrong role, or refuses the endpoint's config.
    """
    spec = spec or config.endpoints[endpoint]
    if not spec.class_path:
        return None
    base = ROLE_BASES[config.role(endpoint)]
    cls: type[EndpointActor] = resolve_class(spec.class_path, f"endpoints.{endpoint}.class", base, allowed_prefixes)
    check_endpoint_config(endpoint, cls, spec.config)
    return cls


def _check_router_and_middleware(config: DispatcherConfig, allowed_prefixes: Sequence[str] | None) -> None:
    """Build the router and middleware as a dispatcher would, and run their setup and teardown."""
    dispatcher = Dispatcher(
        config,
        MemoryOutbox(),
        store=MemoryStore(),
        failures=MemoryFailureStore(),
        allowed_class_prefixes=allowed_prefixes,
    )
    config.check_top_level_keys(type(dispatcher.router).CONFIG_CLASS.model_fields)

    async def setup_and_teardown() -> None:
        await dispatcher.start()
        await dispatcher.stop()

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop here: the usual case (a script, the CLI)
        asyncio.run(setup_and_teardown())
        return
    with ThreadPoolExecutor(1) as thread:  # called from a running loop (a notebook): run it beside that loop
        thread.submit(asyncio.run, setup_and_teardown()).result()
