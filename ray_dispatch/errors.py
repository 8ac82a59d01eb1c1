"""The old import path of ``ray_dispatch.core.errors``, kept working: re-exports it."""

from ray_dispatch.core.errors import *  # noqa: F403
