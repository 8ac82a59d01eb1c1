"""Telnet transport on Ray: a typed line reaches the echo app and its reply comes back on the line."""

from __future__ import annotations

import pytest
from peers.line_client import LineClient
from peers.net import free_port

from .ray_support import app_events, app_messages, deploy, echo_deployment_config, shutdown

pytestmark = pytest.mark.ray


async def test_telnet_round_trip_on_ray(ray_session: None) -> None:
    port = free_port()
    config = echo_deployment_config(
        "telnet", "actors.transports.telnet.TelnetTransport", {"port": port, "session_events": False}
    )
    deployment = await deploy(config)
    client = await LineClient.connect(port)
    try:
        await client.send("hello ray")
        assert await client.read_line(timeout=20) == "echo: hello ray"
        [received] = await app_messages(deployment, 1)
        assert received["from_addr"] == client.address and received["content"] == "hello ray"
        events = await app_events(deployment, lambda e: bool(e))
        [ack] = events
        assert ack["event_type"] == "ack" and ack["user_message_id"] != received["message_id"]
        assert ack["sent_message_id"] == ack["user_message_id"]
    finally:
        await client.close()
        await shutdown(deployment)
