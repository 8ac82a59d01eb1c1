"""The old import path of ``ray_dispatch.core.router``, kept working: re-exports it."""

from ray_dispatch.core.router import *  # noqa: F403
