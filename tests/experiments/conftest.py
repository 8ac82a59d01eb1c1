"""Fixtures for the experiments tests: small configs and traffic files."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from ray_dispatch.core.message import Message

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def examples() -> Path:
    """The repository's examples/ directory."""
    return EXAMPLES


@pytest.fixture
def simple_config() -> dict[str, Any]:
    """SimpleDispatchRouter: sms -> app1, xmpp -> app1 and app2, ussd unmapped."""
    return {
        "router_class": "routers.simple.SimpleDispatchRouter",
        "transport_names": ["sms", "xmpp", "ussd"],
        "exposed_names": ["app1", "app2"],
        "route_mappings": {"sms": "app1", "xmpp": ["app1", "app2"]},
    }


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write traffic lines (dicts, messages or raw strings) to a .jsonl file; return its path."""

    def write(items: Iterable[Any], name: str = "traffic.jsonl") -> Path:
        lines = []
        for item in items:
            if isinstance(item, Message):
                lines.append(item.to_json())
            elif isinstance(item, str):
                lines.append(item)
            else:
                lines.append(json.dumps(item, default=str))
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[dict[str, Any], str], Path]:
    """Write a config dict as YAML; return its path."""
    import yaml

    def write(config: dict[str, Any], name: str) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    return write
