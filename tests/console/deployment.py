"""The deployment the console tests look at: two transports, an app, and an app with no replicas yet.

``late_in`` routes to ``late_app``, which has no class in the config: a
message sent there becomes a failure record on purpose ("no replicas"), and
after ``spawn_late_app`` a replay of it is delivered.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import ray

from ray_dispatch.api import Deployment

SECRET = "s3cr3t-do-not-show"

CONFIG: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["sms_in", "late_in"],
    "exposed_names": ["app", "late_app"],
    "route_mappings": {"sms_in": "app", "late_in": "late_app"},
    "legacy_api_token": SECRET,  # a Vumi-style top-level key for another component, with a secret inline
    "endpoints": {
        "sms_in": {"class": "actors.builtin.MemoryTransport"},
        "late_in": {"class": "actors.builtin.MemoryTransport"},
        "app": {"class": "actors.builtin.EchoApplication", "replicas": 2},
    },
}
ENDPOINTS = ["sms_in", "late_in", "app", "late_app"]


def token_and_port(url: str) -> tuple[str, int]:
    """The token and port of a console URL ``http://127.0.0.1:PORT/?token=...``."""
    parsed = urlparse(url)
    assert parsed.hostname == "127.0.0.1" and parsed.path == "/", url
    return parse_qs(parsed.query)["token"][0], int(parsed.port or 0)


def fail_on_purpose(dep: Deployment, content: str) -> str:
    """Send ``content`` to ``late_in`` while ``late_app`` has no replica; return the failure's id."""
    result = dep.send("late_in", content)
    assert result["destinations"] == [], result
    [failure] = result["failures"]
    assert "no replicas" in failure["reason"], failure
    return str(failure["failure_id"])


def spawn_late_app(dep: Deployment) -> Any:
    """Give ``late_app`` one EchoApplication replica that does not reply; return its handle."""
    from actors.builtin import EchoApplication

    dep.spawn("late_app", EchoApplication, 1, config={"reply": False})
    return dep.endpoint("late_app", "0")


def contents_at(handle: Any) -> list[str]:
    """Contents of the user messages an EchoApplication replica received."""
    return [m["content"] for m in ray.get(handle.received.remote())["messages"]]
