"""Re-exports ``ray_dispatch.tools`` (explain, replay, diff, draw), the routing tools' new home."""

from ray_dispatch.tools import *  # noqa: F403
