"""Run the experiments' coroutines from plain (notebook or terminal) code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result.

    Outside an event loop this is ``asyncio.run``. Inside one (a Jupyter
    cell, an async test) ``asyncio.run`` would refuse, so the coroutine runs
    on a fresh loop in a worker thread while the caller waits; the
    experiments build their own dispatcher, so nothing is shared across loops.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="ray-dispatch-experiment") as pool:
        return pool.submit(asyncio.run, coro).result()
