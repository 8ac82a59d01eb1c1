"""ray_dispatch: Vumi-style message dispatchers on Ray.

The core (messages, routers, middleware, config, the harness) imports no Ray.
"""

from typing import TYPE_CHECKING

from ray_dispatch.core.config import DispatcherConfig, load_config
from ray_dispatch.core.dispatcher import Dispatcher, DispatchOutcome
from ray_dispatch.core.errors import ConfigError, DispatchError, InvalidMessage, NoRoute
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.router import BaseDispatchRouter, ExposedName, RouterConfig, TransportName
from ray_dispatch.core.stores.failures import FailureRecord, FailureStore, MemoryFailureStore
from ray_dispatch.core.stores.routing import MemoryStore, RoutingStore

if TYPE_CHECKING:  # for type checkers and IDEs; at run time they are imported on first use
    from ray_dispatch.api import Deployment, DeploymentNotFound, attach, deploy

__version__ = "0.1.0"

_RAY_API = {"deploy", "attach", "Deployment", "DeploymentNotFound"}


def __getattr__(name: str) -> object:
    """Import the Ray-backed API (``deploy``, ``attach``, ``Deployment``) on first use only."""
    if name in _RAY_API:
        from ray_dispatch import api

        return getattr(api, name)
    raise AttributeError(f"module 'ray_dispatch' has no attribute {name!r}")


__all__ = [
    "BaseDispatchRouter",
    "ConfigError",
    "Deployment",
    "DeploymentNotFound",
    "DispatchError",
    "DispatchOutcome",
    "Dispatcher",
    "DispatcherConfig",
    "ExposedName",
    "FailureRecord",
    "FailureStore",
    "InvalidMessage",
    "MemoryFailureStore",
    "MemoryStore",
    "NoRoute",
    "RouterConfig",
    "RoutingStore",
    "TransportEvent",
    "TransportName",
    "TransportUserMessage",
    "attach",
    "deploy",
    "load_config",
]
