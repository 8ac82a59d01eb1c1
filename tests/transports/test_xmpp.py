"""XMPP transport against a real prosody server on loopback (no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.net import free_port
from peers.prosody import ProsodyServer, prosody_available
from peers.tcp_gate import TcpGate
from peers.xmpp_client import XmppPeer

from actors.transports.xmpp import XmppTransport
from ray_dispatch.errors import ConfigError
from ray_dispatch.message import TransportUserMessage

pytestmark = pytest.mark.skipif(not prosody_available(), reason="prosody is not installed (.ci/run installs it)")

FAST_BACKOFF = {"initial_delay": 0.2, "max_delay": 1.0, "connect_timeout": 5.0}


@pytest.fixture
def prosody(tmp_path: Path) -> Iterator[ProsodyServer]:
    server = ProsodyServer(tmp_path / "prosody", free_port())
    server.register("dispatcher", "bot-secret")
    server.register("alice", "alice-secret")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def transport_config(prosody: ProsodyServer, secret_file: Path, **extra: Any) -> dict[str, Any]:
    secret_file.write_text("bot-secret\n")
    return {
        "jid": "dispatcher@localhost",
        "password": {"file": str(secret_file)},
        "host": "127.0.0.1",
        "port": prosody.port,
        "tls": "none",
        "allow_unencrypted_auth": True,
        "backoff": FAST_BACKOFF,
        **extra,
    }


@pytest.fixture
async def transport(link: Any, prosody: ProsodyServer, tmp_path: Path) -> AsyncIterator[XmppTransport]:
    transport = XmppTransport("xmpp", transport_config(prosody, tmp_path / "password"))
    transport.use_link(link)
    await transport.start()
    try:
        assert await transport.wait_connected(10)
        yield transport
    finally:
        await transport.stop()


@pytest.fixture
async def alice(prosody: ProsodyServer, transport: XmppTransport) -> AsyncIterator[XmppPeer]:
    peer = XmppPeer("alice@localhost", "alice-secret", prosody.port)
    await peer.connect()
    try:
        yield peer
    finally:
        await peer.close()


def outbound(to_addr: str, content: str) -> TransportUserMessage:
    return TransportUserMessage(
        to_addr=to_addr, from_addr="dispatcher@localhost", content=content, transport_name="xmpp", transport_type="xmpp"
    )


async def test_a_chat_message_from_a_peer_becomes_an_inbound_message(
    link: Any, transport: XmppTransport, alice: XmppPeer
) -> None:
    alice.send("dispatcher@localhost", "hello over xmpp")
    await link.wait_until(lambda: link.inbound)
    [message] = link.inbound
    assert (message.from_addr, message.to_addr, message.content) == (
        "alice@localhost",
        "dispatcher@localhost",
        "hello over xmpp",
    )
    assert message.transport_name == "xmpp" and message.transport_type == "xmpp"
    assert message.transport_metadata["xmpp"]["resource"] == "peer"


async def test_a_reply_reaches_the_peer_and_is_acked_and_receipted(
    link: Any, transport: XmppTransport, alice: XmppPeer
) -> None:
    alice.send("dispatcher@localhost", "ping")
    await link.wait_until(lambda: link.inbound)
    reply = link.inbound[0].reply("pong")
    await transport.handle_outbound_message(reply)
    assert await alice.wait_for_bodies(1) == ["pong"]
    assert alice.received[0]["id"] == reply.message_id
    await link.wait_until(lambda: link.events_about(reply.message_id, "delivery_report"))
    ack, report = link.events_about(reply.message_id)
    assert ack.event_type == "ack" and ack.sent_message_id == reply.message_id
    assert report.delivery_status == "delivered"


async def test_a_message_to_an_unknown_user_is_reported_failed(link: Any, transport: XmppTransport) -> None:
    message = outbound("nobody@localhost", "anyone there?")
    await transport.handle_outbound_message(message)
    await link.wait_until(lambda: link.events_about(message.message_id, "delivery_report"))
    report = link.events_about(message.message_id, "delivery_report")[0]
    assert report.delivery_status == "failed"
    assert report.transport_metadata["xmpp"]["error"] == "cancel/service-unavailable"


async def test_server_going_away_and_back_loses_no_queued_message(
    link: Any, prosody: ProsodyServer, tmp_path: Path
) -> None:
    # The transport reaches prosody through a gate, so the test decides when it may reconnect:
    # only after alice is back online (prosody here keeps no offline messages).
    gate = TcpGate(prosody.port)
    await gate.open()
    transport = XmppTransport("xmpp", transport_config(prosody, tmp_path / "password", port=gate.port))
    transport.use_link(link)
    await transport.start()
    sending: asyncio.Task[None] | None = None
    try:
        assert await transport.wait_connected(10)
        prosody.stop()
        await gate.shut()
        await link.wait_until(lambda: not transport.is_connected(), timeout=10)
        messages = [outbound("alice@localhost", f"while the server was away {i}") for i in range(3)]

        async def send_in_order() -> None:
            for message in messages:
                await transport.handle_outbound_message(message)

        sending = asyncio.create_task(send_in_order())
        await asyncio.sleep(0.5)
        assert not sending.done() and link.events == []
        prosody.start()
        alice = XmppPeer("alice@localhost", "alice-secret", prosody.port)
        await alice.connect()
        try:
            await gate.open()
            await asyncio.wait_for(sending, 20)
            assert await alice.wait_for_bodies(3) == [m.content for m in messages]
            assert all(link.events_about(m.message_id, "ack") for m in messages)
        finally:
            await alice.close()
    finally:
        if sending is not None:
            sending.cancel()
        await transport.stop()
        await gate.shut()


async def test_no_session_within_the_timeout_is_a_nack(link: Any, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    config = transport_config(ProsodyServer(tmp_path / "unused", port), tmp_path / "password", outbound_timeout=0.5)
    config["backoff"] = {"initial_delay": 0.1, "max_delay": 0.2, "connect_timeout": 1.0}
    transport = XmppTransport("xmpp", config)
    transport.use_link(link)
    await transport.start()
    try:
        message = outbound("alice@localhost", "lost cause")
        await transport.handle_outbound_message(message)
        [nack] = link.events_about(message.message_id)
        assert nack.event_type == "nack" and "no XMPP session" in nack.nack_reason
    finally:
        await transport.stop()


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="jid"):
        XmppTransport("xmpp", {"jid": "not-a-jid", "password": {"env": "X"}})
    with pytest.raises(ConfigError, match="password"):
        XmppTransport("xmpp", {"jid": "a@b"})
    with pytest.raises(ConfigError, match="tls"):
        XmppTransport("xmpp", {"jid": "a@b", "password": {"env": "X"}, "tls": "maybe"})
