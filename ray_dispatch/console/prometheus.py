"""``/metrics``: the deployment in Prometheus exposition format.

A minimal placeholder until the Prometheus exporter lands: it says the
console is up. ``render_metrics`` is the one function the console calls.
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format's content type."""


def render_metrics(deployment: Any) -> str:
    """Prometheus exposition text for ``deployment`` (a ``ray_dispatch.api.Deployment``); blocking (Ray calls)."""
    name = str(deployment.name).replace("\\", "\\\\").replace('"', '\\"')
    return (
        "# HELP ray_dispatch_up Whether the deployment's console answers (always 1 when scraped).\n"
        "# TYPE ray_dispatch_up gauge\n"
        f'ray_dispatch_up{{deployment="{name}"}} 1\n'
    )
