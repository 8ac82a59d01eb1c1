"""The old import path of ``ray_dispatch.core.stores.routing``, kept working: re-exports it."""

from ray_dispatch.core.stores.routing import *  # noqa: F403
