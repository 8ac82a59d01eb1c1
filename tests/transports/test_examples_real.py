"""The real-transport example configs load, and each endpoint's config is valid for its class (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.endpoint import ApplicationActor, TransportActor
from ray_dispatch.core.config import load_config, resolve_class
from ray_dispatch.core.deployment import check_endpoint_config, deployment_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["seed_real.yaml", "multi_country_smpp.yaml"])
def test_example_config_and_endpoint_configs_are_valid(name: str) -> None:
    config = load_config(EXAMPLES / name)
    spec = deployment_spec(config)
    classes = {}
    for endpoint, endpoint_spec in spec.endpoints.items():
        base = TransportActor if endpoint in config.transport_names else ApplicationActor
        cls = resolve_class(str(endpoint_spec.class_path), f"endpoints.{endpoint}.class", base)
        check_endpoint_config(endpoint, cls, endpoint_spec.config)
        classes[endpoint] = cls.__name__
    assert set(classes) == set(config.transport_names) | set(config.exposed_names)
    assert {classes[t] for t in config.transport_names} <= {"SmppTransport", "XmppTransport"}
