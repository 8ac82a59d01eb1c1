"""``/metrics``: the deployment in Prometheus exposition format.

A minimal placeholder until the Prometheus exporter lands: it says the
console is up. ``render_metrics(deployment) -> str`` is the one name the
console imports from here (``ray_dispatch.console.app``); it is called in a
worker thread, so it may block on Ray.
"""

from __future__ import annotations

from typing import Any


def render_metrics(deployment: Any) -> str:
    """Prometheus exposition text for ``deployment`` (a ``ray_dispatch.api.Deployment``); blocking (Ray calls)."""
    name = str(deployment.name).replace("\\", "\\\\").replace('"', '\\"')
    return (
        "# HELP ray_dispatch_up Whether the deployment's console answers (always 1 when scraped).\n"
        "# TYPE ray_dispatch_up gauge\n"
        f'ray_dispatch_up{{deployment="{name}"}} 1\n'
    )
