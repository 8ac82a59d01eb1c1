"""SMPP transport on Ray: an MO reaches the echo app, its reply is submitted, ack and receipt reach the app."""

from __future__ import annotations

from pathlib import Path

import pytest
from peers.net import free_port
from peers.smsc import SmscPeer

from actors.transports.smpp_codec import gsm_decode, gsm_septets

from .ray_support import app_events, app_messages, deploy, echo_deployment_config, shutdown

pytestmark = pytest.mark.ray


async def test_smpp_round_trip_on_ray(ray_session: None, tmp_path: Path) -> None:
    smsc = SmscPeer(free_port(), free_port(), tmp_path / "smsc.log")
    smsc.start()
    deployment = None
    try:
        await smsc.command("auto_receipt", stat="DELIVRD")
        config = echo_deployment_config(
            "smpp_transport",
            "actors.transports.smpp.SmppTransport",
            {"port": smsc.port, "system_id": "esme1", "backoff": {"initial_delay": 0.2, "connect_timeout": 5}},
        )
        deployment = await deploy(config)
        await smsc.wait_for_receivers()
        septets = gsm_septets("hello smpp")
        assert septets is not None
        await smsc.command(
            "mo", source_addr="27831112222", destination_addr="4321", short_message=b"".join(septets).hex()
        )
        [received] = await app_messages(deployment, 1)
        assert (received["from_addr"], received["to_addr"], received["content"]) == (
            "27831112222",
            "4321",
            "hello smpp",
        )
        [submit] = await smsc.wait_for_submits(1, timeout=20)
        assert gsm_decode(bytes.fromhex(submit["short_message"])) == "echo: hello smpp"
        assert (submit["destination_addr"], submit["source_addr"]) == ("27831112222", "4321")
        events = await app_events(deployment, lambda e: len(e) >= 2)
        assert sorted(e["event_type"] for e in events) == ["ack", "delivery_report"]
        ack = next(e for e in events if e["event_type"] == "ack")
        report = next(e for e in events if e["event_type"] == "delivery_report")
        assert ack["sent_message_id"] == submit["message_id"]
        assert report["user_message_id"] == ack["user_message_id"] and report["delivery_status"] == "delivered"
    finally:
        if deployment is not None:
            await shutdown(deployment)
        smsc.stop()
