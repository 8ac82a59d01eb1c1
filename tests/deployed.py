"""A deployment started for one test and shut down after it, with a shutdown timeout the test chooses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray_dispatch.api import Deployment


@contextmanager
def deployed(config: dict[str, Any], name: str, namespace: str, shutdown_timeout: float = 5.0) -> Iterator[Deployment]:
    """Start ``config`` as deployment ``name`` (no health checks), yield it, shut it down within ``shutdown_timeout``.

    ``Deployment``'s own ``with`` waits up to 30 s per stage for what is still
    queued; a test that leaves a backlog behind on purpose says how long.
    """
    deployment = Deployment.start(config, name=name, namespace=namespace, health_interval=0)
    try:
        yield deployment
    finally:
        deployment.shutdown(timeout=shutdown_timeout)
