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


@pytest.fixture(scope="session", autouse=True)
def run_records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the records ``ray-dispatch run`` leaves (``ray_dispatch.run_state``) out of the user's home."""
    import os

    from ray_dispatch.run_state import STATE_DIR_ENV

    saved = os.environ.get(STATE_DIR_ENV)
    os.environ[STATE_DIR_ENV] = str(tmp_path_factory.mktemp("run_records"))
    yield
    if saved is None:
        os.environ.pop(STATE_DIR_ENV, None)
    else:
        os.environ[STATE_DIR_ENV] = saved
