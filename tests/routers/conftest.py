"""Fixtures for the builtin-router tests: config builders and a ConfigError checker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ray_dispatch.core.errors import ConfigError
from ray_dispatch.testing import RouterHarness

ConfigBuilder = Callable[..., dict[str, Any]]


@pytest.fixture
def router_config() -> ConfigBuilder:
    """Build a dispatcher config for ``routers.<name>`` with the given endpoints and router keys."""

    def build(
        name: str,
        transports: tuple[str, ...] = ("sms", "ussd"),
        exposed: tuple[str, ...] = ("app1", "app2"),
        **keys: Any,
    ) -> dict[str, Any]:
        names = {"transport_names": list(transports), "exposed_names": list(exposed)}
        return {"router_class": f"routers.{name}", **names, **keys}

    return build


@pytest.fixture
def config_error() -> Callable[..., Awaitable[str]]:
    """Assert that a config fails with a ConfigError containing every given fragment; return its text."""

    async def check(config: dict[str, Any], *fragments: str) -> str:
        with pytest.raises(ConfigError) as info:
            async with RouterHarness(config):
                pass
        text = str(info.value)
        for fragment in fragments:
            assert fragment in text, f"{fragment!r} not in {text!r}"
        return text

    return check
