"""Telnet transport against real loopback sockets (no Ray)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from peers.line_client import LineClient
from peers.net import free_port

from actors.transports.telnet import TelnetTransport, strip_telnet_commands
from ray_dispatch.core.message import TransportUserMessage

FAST_BACKOFF = {"initial_delay": 0.05, "max_delay": 0.2, "connect_timeout": 2.0}


async def start_transport(link: Any, **config: Any) -> TelnetTransport:
    config.setdefault("backoff", FAST_BACKOFF)
    transport = TelnetTransport("telnet", config)
    transport.use_link(link)
    await transport.start()
    assert transport.port is not None
    return transport


def outbound(to_addr: str, content: str, **kw: Any) -> TransportUserMessage:
    return TransportUserMessage(
        to_addr=to_addr, from_addr="telnet", content=content, transport_name="telnet", transport_type="telnet", **kw
    )


async def test_each_line_from_a_connection_is_an_inbound_message_from_that_user(link: Any) -> None:
    transport = await start_transport(link, to_addr="service")
    client = await LineClient.connect(transport.port or 0)
    try:
        await client.send("hello world")
        await client.send(b"\xff\xfb\x01second line")  # telnet negotiation is stripped
        await link.wait_until(lambda: len(link.inbound) == 3)
        new, first, second = link.inbound
        assert new.session_event == "new" and new.content is None
        assert (first.from_addr, first.to_addr, first.content) == (client.address, "service", "hello world")
        assert first.transport_name == "telnet" and first.transport_type == "telnet"
        assert second.content == "second line"
        await client.close()
        await link.wait_until(lambda: len(link.inbound) == 4)
        assert link.inbound[-1].session_event == "close"
        assert link.inbound[-1].from_addr == client.address
    finally:
        await transport.stop()


async def test_outbound_goes_to_the_connection_named_by_to_addr_and_is_acked(link: Any) -> None:
    transport = await start_transport(link, session_events=False)
    alice, bob = await LineClient.connect(transport.port or 0), await LineClient.connect(transport.port or 0)
    try:
        await alice.send("hi")
        await bob.send("hi")
        await link.wait_until(lambda: len(link.inbound) == 2)
        assert {m.from_addr for m in link.inbound} == {alice.address, bob.address}
        reply = link.inbound[0].reply("just for you")
        await transport.handle_outbound_message(reply)
        receiver = alice if link.inbound[0].from_addr == alice.address else bob
        assert await receiver.read_line() == "just for you"
        [ack] = link.events_about(reply.message_id)
        assert ack.event_type == "ack" and ack.sent_message_id == reply.message_id
    finally:
        await alice.close()
        await bob.close()
        await transport.stop()


async def test_unknown_to_addr_is_nacked_after_the_bounded_wait(link: Any) -> None:
    transport = await start_transport(link, outbound_wait_timeout=0.3)
    try:
        message = outbound("127.0.0.1:1", "nobody home")
        started = asyncio.get_running_loop().time()
        await transport.handle_outbound_message(message)
        assert asyncio.get_running_loop().time() - started >= 0.3
        [nack] = link.events_about(message.message_id)
        assert nack.event_type == "nack" and "127.0.0.1:1" in nack.nack_reason
    finally:
        await transport.stop()


async def test_named_user_away_and_back_gets_the_queued_messages_in_order(link: Any) -> None:
    transport = await start_transport(link, ask_name=True, greeting="welcome", outbound_wait_timeout=10)
    try:
        first = await LineClient.connect(transport.port or 0)
        assert await first.read_line() == "welcome"
        assert await first.read_exactly("Your name? ") == "Your name? "
        await first.send("alice")
        await first.send("bye for now")
        await link.wait_until(lambda: any(m.content == "bye for now" for m in link.inbound))
        assert {m.from_addr for m in link.inbound} == {"alice"}
        await first.close()
        await link.wait_until(lambda: link.inbound[-1].session_event == "close")

        messages = [outbound("alice", f"while you were away {i}") for i in range(3)]

        async def send_in_order() -> None:
            for message in messages:
                await transport.handle_outbound_message(message)

        sending = asyncio.create_task(send_in_order())
        await asyncio.sleep(0.3)
        assert not sending.done() and link.events == []

        again = await LineClient.connect(transport.port or 0)
        await again.read_line()
        await again.read_exactly("Your name? ")
        await again.send("alice")
        await asyncio.wait_for(sending, 10)
        assert [await again.read_line() for _ in messages] == [m.content for m in messages]
        assert all([e.event_type for e in link.events_about(m.message_id)] == ["ack"] for m in messages)
        await again.close()
    finally:
        await transport.stop()


async def test_closing_reply_hangs_up(link: Any) -> None:
    transport = await start_transport(link, session_events=False)
    client = await LineClient.connect(transport.port or 0)
    try:
        await client.send("end it")
        await link.wait_until(lambda: link.inbound)
        await transport.handle_outbound_message(link.inbound[0].reply("goodbye", continue_session=False))
        assert await client.read_line() == "goodbye"
        assert await client.read_line() == ""  # the transport closed the connection
    finally:
        await client.close()
        await transport.stop()


async def test_busy_port_is_retried_until_it_frees_up(link: Any) -> None:
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    transport = TelnetTransport(
        "telnet", {"port": port, "backoff": {"initial_delay": 0.05, "max_delay": 0.1, "connect_timeout": 0.2}}
    )
    transport.use_link(link)
    try:
        await transport.start()
        assert not await transport.wait_listening(0.2)
        blocker.close()
        assert await transport.wait_listening(5)
        client = await LineClient.connect(port)
        await client.send("made it")
        await link.wait_until(lambda: any(m.content == "made it" for m in link.inbound))
        await client.close()
    finally:
        blocker.close()
        await transport.stop()


def test_strip_telnet_commands_keeps_text_and_escaped_iac() -> None:
    assert strip_telnet_commands(b"\xff\xfd\x03ab\xff\xfa\x18\x01\xff\xf0c\xff\xff") == b"abc\xff"
