"""Benchmark: replay throughput through SimpleDispatchRouter (issue 7 target: >= 50,000 msg/s).

Generates N inbound Vumi messages (JSON Lines, two transports) in a temp
file, replays them through the seed config with ``ray_dispatch.tools.replay``
and prints one JSON object. In the same run it measures a baseline, the bare
``json.loads`` rate of the same lines, because this machine is shared and
noisy: the ratio says how much replay costs on top of reading the file.
``cpu_msgs_per_s`` divides by the process's CPU time instead of wall time,
which is what the machine would do for replay alone (other load on the
shared cores slows the wall-clock rate, not the CPU-time one).

    python bench/replay_bench.py [--messages 100000] [--repeat 3]

It never asserts a timing; compare ``best_msgs_per_s`` with ``target_msgs_per_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ray_dispatch.core.harness import make_inbound
from ray_dispatch.tools import replay

CONFIG = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["smpp_transport", "xmpp_transport"],
    "exposed_names": ["my_application"],
    "route_mappings": {"smpp_transport": "my_application", "xmpp_transport": "my_application"},
}
TARGET = 50_000


def write_traffic(path: Path, count: int) -> None:
    transports = CONFIG["transport_names"]
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            msg = make_inbound(f"message {i}", transport_name=transports[i % 2], from_addr=f"+2783{i:07d}")
            handle.write(msg.to_json() + "\n")


def json_baseline(path: Path) -> float:
    started = time.perf_counter()
    lines = 0
    with path.open("rb") as handle:
        for raw in handle:
            json.loads(raw.decode())
            lines += 1
    return lines / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traffic.jsonl"
        write_traffic(path, args.messages)
        rates, cpu_rates, baselines = [], [], []
        for _ in range(args.repeat):
            baselines.append(json_baseline(path))
            cpu = time.process_time()
            summary = replay(CONFIG, path, progress=False)
            cpu_rates.append(summary.lines / (time.process_time() - cpu))
            if summary.delivered["inbound:my_application"] != args.messages or summary.failures:
                sys.exit(f"replay delivered {dict(summary.delivered)} with failures {dict(summary.failures)}")
            rates.append(summary.rate)
    best, baseline = max(rates), max(baselines)
    print(
        json.dumps(
            {
                "benchmark": "replay",
                "router": "SimpleDispatchRouter",
                "messages": args.messages,
                "runs_msgs_per_s": [round(r) for r in rates],
                "best_msgs_per_s": round(best),
                "median_msgs_per_s": round(statistics.median(rates)),
                "cpu_msgs_per_s": round(max(cpu_rates)),
                "target_msgs_per_s": TARGET,
                "meets_target": best >= TARGET,
                "baseline_json_loads_per_s": round(baseline),
                "replay_cost_vs_json_loads": round(baseline / best, 2),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
