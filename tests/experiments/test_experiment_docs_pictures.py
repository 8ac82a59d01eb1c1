"""The pictures in docs/ are what ``ray-dispatch graph`` draws today (regenerate them when drawing changes)."""

from __future__ import annotations

from pathlib import Path

from ray_dispatch.tools import draw

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "ray-dispatch graph examples/seed.yaml -o docs/seed_topology.svg (and -o docs/seed_topology.png)"


def test_seed_topology_svg_is_current():
    current = draw(ROOT / "examples" / "seed.yaml").to_svg()
    assert (ROOT / "docs" / "seed_topology.svg").read_text(encoding="utf-8") == current, f"run: {REGENERATE}"


def test_seed_topology_png_is_a_picture():
    png = (ROOT / "docs" / "seed_topology.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000  # rasterised fonts differ per machine
