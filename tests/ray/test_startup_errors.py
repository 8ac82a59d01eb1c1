"""Errors raised inside actors reach the user as themselves: one line from ``run``, the original type from deploy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from click.testing import CliRunner

import ray_dispatch
from actors.builtin import MemoryTransport
from ray_dispatch.api import _get, original_error
from ray_dispatch.cli import main
from ray_dispatch.core.errors import ConfigError, one_line

pytestmark = pytest.mark.ray

NAMESPACE = "startup_error_tests"
UNSET = "RAY_DISPATCH_TEST_NEVER_SET_PASSWORD"

CONFIG: dict[str, Any] = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
    "endpoints": {
        "sms": {
            "class": "actors.transports.smpp.SmppTransport",
            "config": {"system_id": "me", "port": 9, "password": {"env": UNSET}},
        },
        "app": {"class": "actors.builtin.EchoApplication"},
    },
}
REFUSAL = f"password: environment variable {UNSET!r} is not set or empty"


@pytest.fixture
def unset(monkeypatch: pytest.MonkeyPatch, ray_session: None) -> Iterator[None]:
    monkeypatch.delenv(UNSET, raising=False)
    yield
    left = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE]
    assert left == [], "a deployment that failed to start leaves no actors behind"


def test_deploy_raises_the_transports_own_error_as_its_type(unset: None) -> None:
    with pytest.raises(ConfigError) as info:
        ray_dispatch.deploy(CONFIG, name="refused", namespace=NAMESPACE, timeout=60)
    assert type(info.value) is ConfigError
    assert str(info.value) == REFUSAL


def test_run_prints_the_transports_own_error_as_one_line(unset: None, tmp_path: Path) -> None:
    path = tmp_path / "refused.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    result = CliRunner().invoke(main, ["run", str(path), "--detach", "--name", "refused", "--namespace", NAMESPACE])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.strip().splitlines() == [f"error: {REFUSAL}"]


def test_an_error_raised_in_an_actor_constructor_comes_back_as_itself(ray_session: None) -> None:
    handle = ray.remote(MemoryTransport).options(namespace=NAMESPACE).remote("sms", {"auto_ak": True})
    try:
        with pytest.raises(ConfigError) as info:
            _get(handle.ping.remote(), timeout=60)
        with pytest.raises(ray.exceptions.ActorDiedError) as died:
            ray.get(handle.ping.remote(), timeout=60)
    finally:
        ray.kill(handle)
    assert type(info.value) is ConfigError
    text = str(info.value)
    assert text.startswith("invalid config of transport endpoint 'sms' (MemoryTransport): auto_ak: unknown key")
    assert "\n" not in text and "Traceback" not in text
    assert one_line(original_error(died.value)) == f"ConfigError: {text}", "as status shows a dead replica"
