"""The old import path of ``ray_dispatch.core.message``, kept working: re-exports it."""

from ray_dispatch.core.message import *  # noqa: F403
