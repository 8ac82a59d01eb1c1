"""HTTP transport on Ray: a POST reaches the echo app, its reply reaches the webhook, the ack the app."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from peers.http_webhook import WebhookPeer
from peers.net import eventually, free_port

from .ray_support import app_events, app_messages, deploy, echo_deployment_config, shutdown

pytestmark = pytest.mark.ray


async def test_http_round_trip_on_ray(ray_session: None) -> None:
    webhook = WebhookPeer(free_port())
    await webhook.start()
    port = free_port()
    config = echo_deployment_config(
        "http_in", "actors.transports.http_api.HttpTransport", {"port": port, "outbound_url": webhook.url}
    )
    deployment = await deploy(config)
    try:
        async with aiohttp.ClientSession() as session:
            body = {"from_addr": "+27831112222", "to_addr": "12345", "content": "hi ray"}
            async with session.post(f"http://127.0.0.1:{port}/messages", json=body) as response:
                assert response.status == 200
                inbound_id = (await response.json())["message_id"]
        [received] = await app_messages(deployment, 1)
        assert received["message_id"] == inbound_id and received["content"] == "hi ray"
        await eventually(lambda: webhook.received, timeout=20)
        [reply] = webhook.received
        assert reply["content"] == "echo: hi ray" and reply["in_reply_to"] == inbound_id
        assert reply["to_addr"] == "+27831112222"
        events: list[dict[str, Any]] = await app_events(deployment, lambda e: bool(e))
        assert [(e["event_type"], e["user_message_id"], e["sent_message_id"]) for e in events] == [
            ("ack", reply["message_id"], "peer-1")
        ]
    finally:
        await shutdown(deployment)
        await webhook.stop()
