"""Shared test fixtures: one local Ray per test session, started only when a test needs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray instance (2 CPUs, no dashboard) shared by every Ray test of the session."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, namespace="ray_dispatch_tests", log_to_driver=False)
    yield
    ray.shutdown()
