"""XMPP transport against a real prosody server on loopback (no Ray)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.net import free_port
from peers.prosody import ProsodyServer, prosody_available
from peers.tcp_gate import TcpGate
from peers.xmpp_client import XmppPeer

from actors import metrics
from actors.transports.xmpp import XmppTransport
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.message import TransportUserMessage
from tests.transports.conftest import HoldingLink

from .xmpp_support import xmpp_config

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
    return xmpp_config(prosody, secret_file, "bot-secret", **{"backoff": FAST_BACKOFF, **extra})


@contextlib.asynccontextmanager
async def connected_transport(
    link: Any, config: dict[str, Any], connected: bool = True
) -> AsyncIterator[XmppTransport]:
    """An XmppTransport with ``config`` recording into ``link``, started (and with ``connected``,
    connected) inside the block, stopped after it."""
    transport = XmppTransport("xmpp", config)
    transport.use_link(link)
    await transport.start()
    try:
        if connected:
            assert await transport.wait_connected(10)
        yield transport
    finally:
        await transport.stop()


@pytest.fixture
async def transport(link: Any, prosody: ProsodyServer, tmp_path: Path) -> AsyncIterator[XmppTransport]:
    async with connected_transport(link, transport_config(prosody, tmp_path / "password")) as transport:
        yield transport


@pytest.fixture
async def alice_direct(prosody: ProsodyServer) -> AsyncIterator[XmppPeer]:
    """alice, online (connected straight to prosody, never through a gate)."""
    peer = XmppPeer("alice@localhost", "alice-secret", prosody.port)
    await peer.connect()
    try:
        yield peer
    finally:
        await peer.close()


@pytest.fixture
def alice(transport: XmppTransport, alice_direct: XmppPeer) -> XmppPeer:
    """alice, online after the transport is."""
    return alice_direct


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
    await link.wait_until(lambda: len(link.events_about(reply.message_id)) == 2)
    # The server's confirmation (the ack) and alice's receipt race each other.
    ack, report = sorted(link.events_about(reply.message_id), key=lambda e: e.event_type)
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
    async with (
        TcpGate(prosody.port) as gate,
        connected_transport(link, transport_config(prosody, tmp_path / "password", port=gate.port)) as transport,
    ):
        prosody.stop()
        await gate.shut()
        await link.wait_until(lambda: not transport.is_connected(), timeout=10)
        messages = [outbound("alice@localhost", f"while the server was away {i}") for i in range(3)]
        for message in messages:  # each takes a place in the window
            await transport.handle_outbound_message(message)
        await asyncio.sleep(0.5)
        assert link.events == []
        prosody.start()
        alice = XmppPeer("alice@localhost", "alice-secret", prosody.port)
        await alice.connect()
        try:
            await gate.open()
            await link.wait_until(lambda: all(link.events_about(m.message_id, "ack") for m in messages), 20)
            assert await alice.wait_for_bodies(3) == [m.content for m in messages]
        finally:
            await alice.close()


@pytest.fixture
async def gated(link: Any, prosody: ProsodyServer, tmp_path: Path) -> AsyncIterator[tuple[TcpGate, XmppTransport]]:
    """A transport with a one-message window that reaches prosody through a gate."""
    async with TcpGate(prosody.port) as gate:
        config = transport_config(prosody, tmp_path / "password", port=gate.port, window_size=1, outbound_timeout=15)
        async with connected_transport(link, config) as transport:
            yield gate, transport


async def send_while_replies_are_held(
    gate: TcpGate, transport: XmppTransport, alice: XmppPeer, content: str
) -> TransportUserMessage:
    """Send ``content`` to alice while the gate holds back what the server says; return once she has it."""
    message = outbound("alice@localhost", content)
    gate.hold_replies()
    await transport.handle_outbound_message(message)
    assert await alice.wait_for_bodies(1) == [message.content]
    return message


async def test_an_outbound_message_is_acked_only_once_the_server_confirmed_it(
    link: Any, gated: tuple[TcpGate, XmppTransport], alice_direct: XmppPeer
) -> None:
    # The gate holds back what the server says, so its XEP-0198 confirmation never arrives;
    # then the connection drops, and the transport sends the message again on the next one.
    gate, transport = gated
    message = await send_while_replies_are_held(gate, transport, alice_direct, "did the server get this?")
    await asyncio.sleep(0.5)  # the server has it ...
    assert link.events_about(message.message_id, "ack") == []  # ... but never said so
    await gate.shut()
    await gate.open()
    [ack] = await link.wait_until(lambda: link.events_about(message.message_id, "ack"), 20)
    assert ack.sent_message_id == message.message_id
    assert transport.counters["outbound_resent"] == 1
    await alice_direct.wait_for_bodies(2)  # at least once: the copy sent again arrives too
    assert {stanza["id"] for stanza in alice_direct.received} == {message.message_id}


async def test_a_full_window_holds_the_next_message_back_until_the_server_confirms(
    link: Any, gated: tuple[TcpGate, XmppTransport], alice_direct: XmppPeer
) -> None:
    gate, transport = gated
    first, second = (outbound("alice@localhost", f"window {i}") for i in range(2))
    gate.hold_replies()
    await transport.handle_outbound_message(first)
    taking_second = asyncio.create_task(transport.handle_outbound_message(second))
    assert await alice_direct.wait_for_bodies(1) == [first.content]
    await asyncio.sleep(0.5)
    assert not taking_second.done()  # backpressure: the dispatcher keeps the second one
    await gate.shut()
    await gate.open()
    await asyncio.wait_for(taking_second, 15)
    await link.wait_until(lambda: all(link.events_about(m.message_id, "ack") for m in (first, second)), 15)
    # The first again (its confirmation never came), then the second.
    assert await alice_direct.wait_for_bodies(3) == [first.content, first.content, second.content]


async def test_stopping_nacks_what_the_server_has_not_confirmed(
    link: Any, gated: tuple[TcpGate, XmppTransport], alice_direct: XmppPeer
) -> None:
    gate, transport = gated
    message = await send_while_replies_are_held(gate, transport, alice_direct, "unconfirmed at shutdown")
    await transport.stop()  # waits 5 s for the confirmation that never comes
    [nack] = link.events_about(message.message_id)
    assert nack.event_type == "nack" and "stopped before the server confirmed it" in nack.nack_reason


async def test_without_stream_management_a_message_is_acked_once_written(link: Any, tmp_path: Path) -> None:
    server = ProsodyServer(tmp_path / "prosody", free_port(), stream_management=False)
    server.register("dispatcher", "bot-secret")
    server.register("alice", "alice-secret")
    server.start()
    transport = XmppTransport("xmpp", transport_config(server, tmp_path / "password"))
    transport.use_link(link)
    alice = XmppPeer("alice@localhost", "alice-secret", server.port)
    try:
        await transport.start()
        assert await transport.wait_connected(10)
        await alice.connect()
        message = outbound("alice@localhost", "no stream management here")
        await transport.handle_outbound_message(message)
        await link.wait_until(lambda: link.events_about(message.message_id, "ack"))
        assert await alice.wait_for_bodies(1) == [message.content]
        assert transport.counters["outbound_resent"] == 0
    finally:
        await alice.close()
        await transport.stop()
        server.stop()


async def test_no_session_within_the_timeout_is_a_nack(link: Any, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    config = transport_config(ProsodyServer(tmp_path / "unused", port), tmp_path / "password", outbound_timeout=0.5)
    config["backoff"] = {"initial_delay": 0.1, "max_delay": 0.2, "connect_timeout": 1.0}
    async with connected_transport(link, config, connected=False) as transport:
        message = outbound("alice@localhost", "lost cause")
        await transport.handle_outbound_message(message)
        [nack] = await link.wait_until(lambda: link.events_about(message.message_id))
        assert nack.event_type == "nack" and "no XMPP session" in nack.nack_reason


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="jid"):
        XmppTransport("xmpp", {"jid": "not-a-jid", "password": {"env": "X"}})
    with pytest.raises(ConfigError, match="password"):
        XmppTransport("xmpp", {"jid": "a@b"})
    with pytest.raises(ConfigError, match="tls"):
        XmppTransport("xmpp", {"jid": "a@b", "password": {"env": "X"}, "tls": "maybe"})


async def test_a_body_xml_cannot_carry_is_nacked_at_once_naming_the_character(
    link: Any, transport: XmppTransport, alice: XmppPeer
) -> None:
    bad = outbound("alice@localhost", "bell \x07 here")
    await transport.handle_outbound_message(bad)
    [nack] = link.events_about(bad.message_id)
    assert nack.event_type == "nack" and "U+0007 at index 5" in nack.nack_reason
    good = outbound("alice@localhost", "after the bell")
    await transport.handle_outbound_message(good)
    assert await alice.wait_for_bodies(1) == ["after the bell"]  # the session was never disturbed
    await link.wait_until(lambda: link.events_about(good.message_id, "ack"))
    assert transport.counters["outbound_resent"] == 0


async def test_strip_sends_the_body_without_the_characters_xml_cannot_carry(
    link: Any, prosody: ProsodyServer, alice_direct: XmppPeer, tmp_path: Path
) -> None:
    config = transport_config(prosody, tmp_path / "password", xml_invalid_characters="strip")
    async with connected_transport(link, config) as transport:
        message = outbound("alice@localhost", "bell \x07\x1b here \ufffe")
        await transport.handle_outbound_message(message)
        assert await alice_direct.wait_for_bodies(1) == ["bell  here "]
        await link.wait_until(lambda: link.events_about(message.message_id, "ack"))


async def test_a_stanza_the_server_keeps_dropping_the_stream_for_is_resent_at_most_max_resends_times(
    link: Any, prosody: ProsodyServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Let a character through that makes prosody drop the stream (as it did before the check existed).
    monkeypatch.setattr("actors.transports.xmpp.first_xml_invalid_character", lambda text: None)
    config = transport_config(prosody, tmp_path / "password", max_resends=2, outbound_timeout=120)
    async with connected_transport(link, config) as transport:
        message = outbound("alice@localhost", "poison \x07")
        await transport.handle_outbound_message(message)
        await link.wait_until(lambda: link.events_about(message.message_id), timeout=60)
        [nack] = link.events_about(message.message_id)
        assert nack.event_type == "nack" and "dropped 3 times" in nack.nack_reason
        assert "max_resends: 2" in nack.nack_reason
        assert transport.counters["outbound_resent"] == 2


async def test_a_refused_login_names_the_servers_condition_in_state_and_nacks(
    link: Any, prosody: ProsodyServer, tmp_path: Path
) -> None:
    config = transport_config(prosody, tmp_path / "password", outbound_timeout=2)
    (tmp_path / "password").write_text("wrong-secret\n")
    async with connected_transport(link, config, connected=False) as transport:
        message = outbound("alice@localhost", "locked out")
        await transport.handle_outbound_message(message)
        [nack] = await link.wait_until(lambda: link.events_about(message.message_id), timeout=15)
        assert "not-authorized" in nack.nack_reason
        [state] = transport.connection_state()
        assert state["state"] == "refused" and "not-authorized" in state["reason"] and state["attempts"] >= 1


async def test_an_inbound_message_the_dispatcher_had_not_confirmed_when_the_connection_dropped_comes_again(
    tmp_path: Path,
) -> None:
    # Stream management counts a message as handled only once the dispatcher confirmed it, so the
    # server keeps it (offline storage here) when the connection drops first, and delivers it again.
    link = HoldingLink()
    prosody = ProsodyServer(tmp_path / "prosody", free_port(), offline_storage=True)
    prosody.register("dispatcher", "bot-secret")
    prosody.register("alice", "alice-secret")
    prosody.start()
    try:
        async with TcpGate(prosody.port) as gate:
            config = transport_config(prosody, tmp_path / "password", port=gate.port)
            async with connected_transport(link, config) as transport:
                alice = XmppPeer("alice@localhost", "alice-secret", prosody.port)
                await alice.connect()
                try:
                    alice.send("dispatcher@localhost", "not confirmed yet")
                    await link.wait_until(lambda: link.inbound)
                    await gate.shut()  # the transport's connection drops before the dispatcher confirmed
                    await link.wait_until(lambda: not transport.is_connected(), timeout=10)
                    await gate.open()
                    await link.wait_until(lambda: len(link.inbound) == 2, timeout=20)
                    link.release()
                    assert [m.content for m in link.inbound] == ["not confirmed yet"] * 2
                finally:
                    await alice.close()
    finally:
        link.release()
        prosody.stop()


async def test_groupchat_headline_and_empty_messages_are_counted_and_logged_once_per_kind(
    link: Any, transport: XmppTransport, alice: XmppPeer, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    recorded: list[tuple[str, str, str]] = []
    monkeypatch.setattr(metrics, "record_endpoint_ignored", lambda *args: recorded.append(args))
    to_transport = "dispatcher@localhost/ray_dispatch"  # a full JID: the server delivers every type to it
    with caplog.at_level(logging.WARNING, logger="actors.transports.xmpp"):
        alice.send(to_transport, "room talk", mtype="groupchat")
        alice.send(to_transport, "more room talk", mtype="groupchat")
        alice.send(to_transport, "breaking news", mtype="headline")
        alice.client.send_raw(f'<message to="{to_transport}" type="chat"><body></body></message>')
        alice.send(to_transport, "a real chat message")
        await link.wait_until(lambda: link.inbound)
        await link.wait_until(lambda: sum(transport.counters[f"ignored_{k}"] for k in IGNORED) == 4)
    assert [m.content for m in link.inbound] == ["a real chat message"]
    assert {k: transport.counters[f"ignored_{k}"] for k in IGNORED} == {"groupchat": 2, "headline": 1, "empty_body": 1}
    assert sorted(kind for _, _, kind in recorded) == ["empty_body", "groupchat", "groupchat", "headline"]
    lines = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(lines) == 3, lines
    assert any("ignoring groupchat messages (first from alice@localhost/peer)" in line for line in lines)
    assert any("ignoring headline messages" in line and "counters['ignored_headline']" in line for line in lines)
    assert any("ignoring messages with an empty body" in line for line in lines)


IGNORED = ("groupchat", "headline", "empty_body")
