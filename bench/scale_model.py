"""The benchmark's scale-out model: routed msg/s predicted per number of cores from CPU per message.

Each routed message costs ``total`` µs of CPU summed over the processes it
passes (transport, dispatcher, application). With ``N`` cores kept busy and
nothing else limiting, the pipeline routes ``N * 1e6 / total`` messages per
second. Each role's process is one Python event loop, so one replica of it
tops out near ``1e6 / us`` messages per second: the model also says how many
replicas of each role (``dispatcher.replicas``, ``endpoints.<name>.replicas``)
that predicted rate needs. It leaves out Ray's own processes (raylet, GCS)
and the network, so it is an upper bound; ``model_check`` compares its
prediction for the cores of the measuring machine with the measured rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

CORES = (2, 4, 8, 16, 32)


def scale_out_model(
    cpu_us_per_msg: Mapping[str, float] | None,
    measured_msgs_per_s: float | None = None,
    measured_cores: int | None = None,
    cores: Iterable[int] = CORES,
) -> dict[str, Any] | None:
    """Predicted routed msg/s per core count from per-process CPU µs per message (None without them).

    Args:
        cpu_us_per_msg: role -> µs of CPU per routed message (a ``total`` entry is ignored and recomputed).
        measured_msgs_per_s: the rate measured on this machine, for ``model_check``.
        measured_cores: cores of this machine (``model_check`` compares the prediction for them).
        cores: the core counts to predict for.
    """
    if not cpu_us_per_msg:
        return None
    roles = {role: us for role, us in cpu_us_per_msg.items() if role != "total"}
    total = sum(roles.values())
    if total <= 0:
        return None
    predicted = {str(n): round(n * 1e6 / total) for n in cores}
    replicas = {
        str(n): {role: max(1, math.ceil(n * 1e6 / total * us / 1e6)) for role, us in roles.items()} for n in cores
    }
    model: dict[str, Any] = {
        "cpu_us_per_msg_total": round(total, 2),
        "cpu_us_per_msg": {role: round(us, 2) for role, us in roles.items()},
        "one_process_ceiling_msgs_per_s": {role: round(1e6 / us) if us > 0 else None for role, us in roles.items()},
        "predicted_msgs_per_s": predicted,
        "replicas_needed": replicas,
    }
    if measured_msgs_per_s and measured_cores:
        expected = measured_cores * 1e6 / total
        model["model_check"] = {
            "cores": measured_cores,
            "predicted_msgs_per_s": round(expected),
            "measured_msgs_per_s": round(measured_msgs_per_s),
            "measured_over_predicted": round(measured_msgs_per_s / expected, 3),
        }
    return model
