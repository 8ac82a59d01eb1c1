"""``/metrics``: the deployment in Prometheus exposition format.

A minimal placeholder until the Prometheus exporter lands, with its
signature: ``render_metrics(status) -> (body, content_type)`` is the one name
the console imports from here (``ray_dispatch.console.app``).
"""

from __future__ import annotations

from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format's content type."""


def render_metrics(status: dict[str, Any]) -> tuple[bytes, str]:
    """The exposition text of a ``Deployment.status()`` snapshot, and its content type: here only an up gauge."""
    name = str(status.get("name", "")).replace("\\", "\\\\").replace('"', '\\"')
    text = (
        "# HELP ray_dispatch_up Whether the deployment answered its status (always 1 when scraped).\n"
        "# TYPE ray_dispatch_up gauge\n"
        f'ray_dispatch_up{{deployment="{name}"}} 1\n'
    )
    return text.encode(), CONTENT_TYPE
