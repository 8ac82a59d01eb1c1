"""Old home of the ``endpoints:`` / ``dispatcher:`` models: they are now part of ``ray_dispatch.core.config``.

Kept so existing imports work; new code imports from ``ray_dispatch.core.config``.
"""

from __future__ import annotations

from ray_dispatch.core.config import (
    DEFAULT_ACTOR_OPTIONS,
    DispatcherConfig,
    DispatcherSpec,
    EndpointSpec,
    Policy,
    check_endpoint_config,
)

DeploymentSpec = DispatcherConfig
"""What a deployment starts is part of the one config model (``.dispatcher``, ``.endpoints``)."""


def deployment_spec(config: DispatcherConfig) -> DispatcherConfig:
    """Return ``config``: its ``dispatcher`` and ``endpoints`` sections were validated when it was loaded."""
    return config


__all__ = [
    "DEFAULT_ACTOR_OPTIONS",
    "DeploymentSpec",
    "DispatcherSpec",
    "EndpointSpec",
    "Policy",
    "check_endpoint_config",
    "deployment_spec",
]
