"""The old import path of ``ray_dispatch.core.dispatcher``, kept working: re-exports it."""

from ray_dispatch.core.dispatcher import *  # noqa: F403
