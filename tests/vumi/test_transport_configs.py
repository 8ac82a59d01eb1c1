"""A Vumi SMPP transport config (``twisted_endpoint``, inline password, processors) runs our SMPP transport."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from peers.line_client import LineClient
from peers.net import free_port
from peers.prosody import ProsodyServer, prosody_available
from peers.smsc import SmscPeer
from peers.xmpp_client import XmppPeer

from actors.transports.vumi import (
    VumiSmppTransport,
    VumiTelnetTransport,
    VumiXmppTransport,
    vumi_smpp_config,
    vumi_telnet_config,
    vumi_xmpp_config,
)
from ray_dispatch.core.config import resolve_class
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.message import TransportUserMessage
from tests.transports.test_smpp import gsm_hex


def vumi_config(port: int, **more: Any) -> dict[str, Any]:
    """The config of Vumi's SMPP processor tests (vumi/transports/smpp/processors/tests/test_mica.py,
    MicaProcessorTestCase.default_config) with Vumi's default processors and the test SMSC's port."""
    return {
        "transport_name": "sphex",
        "twisted_endpoint": f"tcp:host=127.0.0.1:port={port}",
        "delivery_report_processor": "vumi.transports.smpp.processors.DeliveryReportProcessor",
        "deliver_short_message_processor": "vumi.transports.smpp.processors.DeliverShortMessageProcessor",
        "system_id": "foo",
        "password": "bar",
        **more,
    }


@pytest.mark.parametrize(
    "path", ["vumi.transports.smpp.SmppTransceiverTransport", "vumi.transports.smpp.SmppTransport"]
)
def test_vumi_smpp_class_paths_resolve_to_our_transport(path: str) -> None:
    assert resolve_class(path, "endpoints.sms.class") is VumiSmppTransport


def test_split_bind_classes_are_refused_naming_what_to_use() -> None:
    with pytest.raises(
        ConfigError, match=r"use one endpoint with class vumi\.transports\.smpp\.SmppTransceiverTransport"
    ):
        resolve_class("vumi.transports.smpp.SmppTransmitterTransport", "endpoints.sms.class")


def test_vumi_keys_map_onto_ours() -> None:
    mapped = vumi_smpp_config(
        vumi_config(
            2775,
            mt_tps=5,
            throttle_delay=0.5,
            initial_reconnect_delay=2,
            submit_short_message_processor_config={"send_multipart_sar": True},
        )
    )
    assert mapped["host"] == "127.0.0.1" and mapped["port"] == "2775" and mapped["system_id"] == "foo"
    assert mapped["tps"] == 5 and mapped["throttle_delay"] == 0.5 and mapped["backoff"] == {"initial_delay": 2}
    assert mapped["long_messages"] == "sar" and mapped["password"].reveal("password") == "bar"
    assert vumi_smpp_config({"twisted_endpoint": "tcp:smsc.example.org:2775"})["host"] == "smsc.example.org"


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        (
            "deliver_short_message_processor",
            "vumi.transports.smpp.processors.mica.DeliverShortMessageProcessor",
            "only Vumi's default",
        ),
        ("submit_short_message_processor_config", {"send_long_messages": True}, "use send_multipart_udh"),
        ("twisted_endpoint", "ssl:host=a:port=1", "only 'tcp:host=...:port=...'"),
        (
            "smpp_frobnicate",
            1,
            "smpp_frobnicate: not a key of Vumi's SMPP transport that ray_dispatch supports; use one of",
        ),
    ],
)
def test_unsupported_key_is_refused_with_what_to_use(key: str, value: Any, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        VumiSmppTransport("sms", vumi_config(2775, **{key: value}))
    assert says in str(info.value) and key in str(info.value)


def test_inline_password_is_accepted_with_a_warning_and_never_echoed(caplog: Any) -> None:
    with caplog.at_level(logging.WARNING):
        transport = VumiSmppTransport("sms", vumi_config(2775, password="s3cret"))
    assert "password: {env: NAME}" in caplog.text and "s3cret" not in caplog.text
    assert "s3cret" not in repr(transport.config) and "s3cret" not in str(transport.config)


async def test_vumi_config_binds_to_the_test_smsc_and_delivers_both_ways(link: Any, smsc: SmscPeer) -> None:
    transport = VumiSmppTransport("sms", vumi_config(smsc.port, initial_reconnect_delay=0.1, smpp_bind_timeout=3))
    transport.use_link(link)
    await transport.start()
    try:
        assert await transport.wait_bound(10)
        await smsc.wait_for_receivers()
        await smsc.command("mo", source_addr="27831112222", destination_addr="4321", short_message=gsm_hex("ping"))
        await link.wait_until(lambda: link.inbound)
        assert [(m.content, m.from_addr, m.to_addr) for m in link.inbound] == [("ping", "27831112222", "4321")]

        reply = TransportUserMessage(
            to_addr="27831112222", from_addr="4321", content="pong", transport_name="sms", transport_type="sms"
        )
        await transport.handle_outbound_message(reply)
        [submit] = await smsc.wait_for_submits(1)
        assert submit["destination_addr"] == "27831112222"
        await link.wait_until(lambda: link.events_about(reply.message_id, "ack"))
    finally:
        await transport.stop()


def test_vumi_telnet_keys_map_onto_ours() -> None:
    assert vumi_telnet_config({"twisted_endpoint": "tcp:port=9010:interface=127.0.0.1", "to_addr": "svc"}) == {
        "port": "9010",
        "host": "127.0.0.1",
        "to_addr": "svc",
    }
    assert vumi_telnet_config({"telnet_port": 9010, "transport_type": "telnet"}) == {
        "port": 9010,
        "transport_type": "telnet",
    }
    with pytest.raises(ConfigError, match="telnet_colour: not a key of Vumi's Telnet transport"):
        VumiTelnetTransport("telnet", {"telnet_port": 0, "telnet_colour": "red"})


async def test_vumi_telnet_config_listens_and_receives(link: Any) -> None:
    assert resolve_class("vumi.transports.telnet.TelnetServerTransport", "endpoints.t.class") is VumiTelnetTransport
    transport = VumiTelnetTransport("telnet", {"twisted_endpoint": "tcp:port=0:interface=127.0.0.1", "to_addr": "svc"})
    transport.use_link(link)
    await transport.start()
    try:
        assert await transport.wait_listening(10)
        client = await LineClient.connect(transport.port or 0)
        try:
            await client.send("hello")
            await link.wait_until(lambda: any(m.content == "hello" for m in link.inbound))
            (line,) = [m for m in link.inbound if m.content == "hello"]
            assert line.to_addr == "svc" and line.from_addr == client.address
        finally:
            await client.close()
    finally:
        await transport.stop()


def test_vumi_transport_we_do_not_map_is_refused_naming_those_we_do() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_class("vumi.transports.httprpc.HttpRpcTransport", "endpoints.x.class")
    text = str(info.value)
    assert text.startswith("endpoints.x.class: Vumi's vumi.transports.httprpc.HttpRpcTransport is not available")
    assert "vumi.transports.smpp.SmppTransceiverTransport" in text
    assert "vumi.transports.telnet.TelnetServerTransport" in text
    assert "vumi.transports.xmpp.XMPPTransport" in text


# -- Vumi's XMPPTransport -------------------------------------------------------------------------


def vumi_xmpp(port: int, **more: Any) -> dict[str, Any]:
    """The keys of Vumi's XMPPTransport config (vumi/transports/xmpp/xmpp.py, validate_config), on our prosody."""
    return {
        "transport_name": "xmpp_transport",
        "username": "dispatcher@localhost",
        "password": "bot-secret",
        "host": "127.0.0.1",
        "port": port,
        "status": "chat",
        "status_message": "Ready",
        "ping_interval": 60,
        "presence_interval": 60,
        "debug": False,
        **more,
    }


@pytest.mark.parametrize("path", ["vumi.transports.xmpp.XMPPTransport", "vumi.transports.xmpp.xmpp.XMPPTransport"])
def test_vumi_xmpp_class_paths_resolve_to_our_transport(path: str) -> None:
    assert resolve_class(path, "endpoints.xmpp.class") is VumiXmppTransport


def test_vumi_xmpp_keys_map_onto_ours(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        mapped = vumi_xmpp_config(vumi_xmpp(5222, username="bot@example.org/vumi"))
    assert mapped["jid"] == "bot@example.org" and mapped["resource"] == "vumi"
    assert (mapped["host"], mapped["port"], mapped["ping_interval"]) == ("127.0.0.1", 5222, 60)
    assert mapped["password"].reveal("password") == "bot-secret"
    assert "status" not in mapped and "presence_interval" not in mapped
    assert "bot-secret" not in caplog.text and "{env: NAME}" in caplog.text


def test_an_unsupported_vumi_xmpp_key_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"^roster_size: not a key of Vumi's XMPP transport"):
        vumi_xmpp_config(vumi_xmpp(5222, roster_size=3))


@pytest.mark.skipif(not prosody_available(), reason="prosody is not installed (.ci/run installs it)")
async def test_a_vumi_xmpp_config_logs_in_to_prosody_and_carries_a_chat_message(link: Any, tmp_path: Path) -> None:
    server = ProsodyServer(tmp_path / "prosody", free_port())
    server.register("dispatcher", "bot-secret")
    server.register("alice", "alice-secret")
    server.start()
    try:
        # tls and allow_unencrypted_auth are ours (loopback prosody without certificates); the rest is Vumi's
        config = vumi_xmpp(server.port, tls="none", allow_unencrypted_auth=True)
        transport = VumiXmppTransport("xmpp", config)
        transport.use_link(link)
        await transport.start()
        alice = XmppPeer("alice@localhost", "alice-secret", server.port)
        try:
            assert await transport.wait_connected(30)
            await alice.connect()
            alice.send("dispatcher@localhost", "hello from a Vumi config")
            await link.wait_until(lambda: link.inbound)
            [message] = link.inbound
            assert (message.from_addr, message.content) == ("alice@localhost", "hello from a Vumi config")
        finally:
            await alice.close()
            await transport.stop()
    finally:
        server.stop()
