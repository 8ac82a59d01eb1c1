"""Start Ray the way ``ray-dispatch`` does (``api.ensure_ray``) and report which call arguments went inline.

A call argument above Ray's ``max_direct_call_object_size`` is put in the
object store by the caller first, so while the call is pending the caller's
reference table holds one more object. Prints ``RESULT <json>``: for each
argument size, the extra objects seen for a driver -> actor and an actor ->
actor call (0 = inline). Run by ``test_inline_blobs.py`` through ``tests.cluster_run``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import ray

from ray_dispatch.api import ensure_ray

SIZES = (50_000, 200_000, 900_000, 2_000_000)


def objects_held_for_a_call(target: Any, size: int) -> int:
    """Objects the caller holds for a pending call of ``target.hold(<size bytes>)``, besides its return."""
    worker = ray._private.worker.global_worker.core_worker
    before = len(worker.get_all_reference_counts())
    ref = target.hold.remote(b"x" * size)
    during = len(worker.get_all_reference_counts())
    ray.get(ref)
    return during - before - 1


@ray.remote(num_cpus=0)
class Receiver:
    """Takes an argument a moment (so the call is still pending when the caller counts); calls its peer."""

    def hold(self, blob: bytes) -> int:
        """Wait a little and return the argument's size."""
        time.sleep(0.05)
        return len(blob)

    def call_peer(self, peer: Any, size: int) -> int:
        """``objects_held_for_a_call`` from this actor to ``peer``."""
        return objects_held_for_a_call(peer, size)


def main() -> None:
    """Probe a local Ray started by ``ensure_ray``; print the result line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--deadline", type=int, default=120)
    parser.parse_args()
    os.environ.pop("RAY_ADDRESS", None)
    ensure_ray(quiet=True)
    try:
        first, second = Receiver.remote(), Receiver.remote()
        ray.get([first.hold.remote(b""), second.hold.remote(b"")])
        result = {
            str(size): {
                "driver_to_actor": objects_held_for_a_call(first, size),
                "actor_to_actor": ray.get(first.call_peer.remote(second, size)),
            }
            for size in SIZES
        }
    finally:
        ray.shutdown()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
