"""The local Ray ``ray-dispatch`` starts lets batch blobs up to ~1 MiB travel inline with the call.

Ray's default ``max_direct_call_object_size`` (100 KiB) would send a batch of
1000 SMS-sized messages (~180 KB) through the object store, at about twice
the CPU per message (README, "Batch blobs and Ray's inline limit"). The probe
starts its own Ray (the session's is taken), in a subprocess with a deadline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_dispatch.core.batching import BatchingOptions
from tests.cluster_run import run_cluster_script

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("inline_blobs_local.py")


def test_blobs_up_to_max_batch_bytes_go_inline_and_larger_ones_through_the_object_store() -> None:
    result = run_cluster_script(SCRIPT, 120)
    assert BatchingOptions().max_batch_bytes > 900_000
    for size in ("50000", "200000", "900000"):
        assert result[size] == {"driver_to_actor": 0, "actor_to_actor": 0}, f"a {size}-byte argument was not inline"
    assert result["2000000"] == {"driver_to_actor": 1, "actor_to_actor": 1}, "the probe must see the object store"
