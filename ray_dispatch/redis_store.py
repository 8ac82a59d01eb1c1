"""The old import path of ``ray_dispatch.core.stores.redis_routing``, kept working: re-exports it."""

from ray_dispatch.core.stores.redis_routing import *  # noqa: F403
