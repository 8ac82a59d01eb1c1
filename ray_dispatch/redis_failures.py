"""The old import path of ``ray_dispatch.core.stores.redis_failures``, kept working: re-exports it."""

from ray_dispatch.core.stores.redis_failures import *  # noqa: F403
