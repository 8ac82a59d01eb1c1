"""XMPP transport on Ray: a chat message reaches the echo app, the reply reaches the peer, ack and receipt the app."""

from __future__ import annotations

from pathlib import Path

import pytest
from peers.net import free_port
from peers.prosody import ProsodyServer, prosody_available
from peers.xmpp_client import XmppPeer

from .ray_support import app_events, app_messages, deploy, echo_deployment_config, shutdown, xmpp_transport_config

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not prosody_available(), reason="prosody is not installed (.ci/run installs it)"),
]


async def test_xmpp_round_trip_on_ray(ray_session: None, tmp_path: Path) -> None:
    prosody = ProsodyServer(tmp_path / "prosody", free_port())
    prosody.register("dispatcher", "bot-secret")
    prosody.register("alice", "alice-secret")
    prosody.start()
    deployment = None
    alice = XmppPeer("alice@localhost", "alice-secret", prosody.port)
    try:
        config = echo_deployment_config(
            "xmpp_transport",
            "actors.transports.xmpp.XmppTransport",
            xmpp_transport_config(prosody.port, tmp_path / "password"),
        )
        deployment = await deploy(config)
        await alice.connect()
        alice.send("dispatcher@localhost", "hello xmpp")
        assert await alice.wait_for_bodies(1, timeout=20) == ["echo: hello xmpp"]
        [received] = await app_messages(deployment, 1)
        assert (received["from_addr"], received["to_addr"]) == ("alice@localhost", "dispatcher@localhost")
        reply_id = alice.received[0]["id"]
        events = await app_events(deployment, lambda e: len(e) >= 2)
        assert sorted((e["event_type"], e["user_message_id"]) for e in events) == [
            ("ack", reply_id),
            ("delivery_report", reply_id),
        ]
    finally:
        await alice.close()
        if deployment is not None:
            await shutdown(deployment)
        prosody.stop()
