"""Run the ray_dispatch benchmark (same as ``ray-dispatch bench``); prints one JSON object.

python bench/run_bench.py [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse

from ray_dispatch import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller scenarios: under a minute")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    bench.main(quick=args.quick, out=args.out)


if __name__ == "__main__":
    main()
