"""The old import path of ``ray_dispatch.core.stores.failures``, kept working: re-exports it."""

from ray_dispatch.core.stores.failures import *  # noqa: F403
