"""Helpers for the transports' Ray tests: a one-transport, one-echo-app deployment."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray_dispatch.api import Deployment


def echo_deployment_config(transport: str, transport_class: str, transport_config: dict[str, Any]) -> dict[str, Any]:
    """One real transport routed to one EchoApplication (``app``), replies back out."""
    return {
        "router_class": "vumi.dispatchers.SimpleDispatchRouter",
        "transport_names": [transport],
        "exposed_names": ["app"],
        "route_mappings": {transport: "app"},
        "endpoints": {
            transport: {"class": transport_class, "config": transport_config},
            "app": {"class": "actors.builtin.EchoApplication", "config": {"prefix": "echo: "}},
        },
    }


def xmpp_transport_config(port: int, secret_file: Path) -> dict[str, Any]:
    """An XmppTransport config for ``dispatcher@localhost`` (password ``bot-secret``) on a loopback prosody."""
    secret_file.write_text("bot-secret")
    return {
        "jid": "dispatcher@localhost",
        "password": {"file": str(secret_file)},
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "allow_unencrypted_auth": True,
    }


async def deploy(config: dict[str, Any]) -> Deployment:
    """Start the deployment off the event loop (so loopback peers in this loop keep serving)."""
    name = f"transport-test-{uuid.uuid4().hex[:8]}"
    return await asyncio.to_thread(Deployment.start, config, name=name, health_interval=0.5)


async def shutdown(deployment: Deployment) -> None:
    """Stop every actor of the deployment."""
    await asyncio.to_thread(deployment.shutdown)


async def app_events(
    deployment: Deployment, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Poll (bounded) the echo app's events until ``predicate(events)``; return them."""
    app = deployment.endpoint("app")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        events: list[dict[str, Any]] = (await app.received.remote())["events"]
        if predicate(events) or loop.time() > deadline:
            return events
        await asyncio.sleep(0.1)


async def app_messages(deployment: Deployment, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Wait (bounded) until the echo app received ``count`` user messages; return them."""
    app = deployment.endpoint("app")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        messages: list[dict[str, Any]] = (await app.received.remote())["messages"]
        if len(messages) >= count or loop.time() > deadline:
            return messages
        await asyncio.sleep(0.1)
