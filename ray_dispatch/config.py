"""The old import path of ``ray_dispatch.core.config``, kept working: re-exports it."""

from ray_dispatch.core.config import *  # noqa: F403
