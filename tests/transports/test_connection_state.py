"""Connection state of every transport against real peers on loopback (no Ray): down, refused, up, n/a."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from peers.http_webhook import WebhookPeer
from peers.net import free_port
from peers.prosody import ProsodyServer, prosody_available
from peers.smsc import SmscPeer

from actors import metrics
from actors.connection import describe_connection
from actors.endpoint import TransportActor
from actors.transports.common import BackoffConfig, ConnectionSupervisor
from actors.transports.http_api import HttpTransport
from actors.transports.smpp import SmppTransport
from actors.transports.telnet import TelnetTransport
from actors.transports.xmpp import XmppTransport
from tests.transports.conftest import RecordingLink

from .smpp_support import FAST_BACKOFF, outbound
from .xmpp_support import xmpp_config


async def wait_for_state(transport: Any, predicate: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Poll (bounded) ``transport.connection_state()`` until ``predicate`` holds; return it or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        states: list[dict[str, Any]] = transport.connection_state()
        if predicate(states):
            return states
        if loop.time() > deadline:
            raise AssertionError(f"connection state did not get there within {timeout}s: {states}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def started(link: RecordingLink) -> AsyncIterator[Any]:
    """Start transports on ``link``; stop them after the test."""
    running: list[TransportActor] = []

    async def start(transport: TransportActor) -> Any:
        transport.use_link(link)
        running.append(transport)
        await transport.start()
        return transport

    try:
        yield start
    finally:
        for transport in running:
            await transport.stop()


async def test_smpp_with_no_smsc_listening_is_down_with_the_os_error_and_a_next_try(started: Any) -> None:
    transport = await started(
        SmppTransport("smpp", {"port": free_port(), "system_id": "esme1", "backoff": FAST_BACKOFF})
    )
    [state] = await wait_for_state(transport, lambda states: states[0]["attempts"] >= 2)
    assert state["connection"] == "TRX" and state["state"] == "down" and state["up"] is False
    assert "ConnectionRefusedError" in state["reason"] and "Connect call failed" in state["reason"]
    assert state["next_attempt"] is not None and state["next_attempt"] - time.time() < 5
    info = await transport.ping()
    assert info["connected"] is False and info["connections"][0]["state"] == "down"


async def test_smpp_refused_bind_names_the_status_and_its_code_and_waits_before_trying_again(
    started: Any, smsc: SmscPeer
) -> None:
    await smsc.command("refuse_binds", status=0x0E)
    config = {"port": smsc.port, "system_id": "esme1", "backoff": FAST_BACKOFF, "bind_mode": "transmitter_receiver"}
    transport = await started(SmppTransport("smpp", config))
    states = await wait_for_state(transport, lambda states: all(s["state"] == "refused" for s in states))
    assert [s["connection"] for s in states] == ["TX", "RX"]
    for state in states:
        assert "ESME_RINVPASWD (0x0000000E)" in state["reason"] and state["refusal"] == 0x0E
        assert state["attempts"] == 1 and state["next_attempt"] - time.time() > 200
    line = describe_connection(states[0])
    assert line.startswith("TX: refused since ") and "ESME_RINVPASWD (0x0000000E)" in line
    assert ", attempt 1, next try in 29" in line or ", attempt 1, next try in 30" in line


async def test_smpp_bound_after_the_smsc_comes_back_clears_the_retry_count(started: Any, smsc: SmscPeer) -> None:
    await smsc.command("refuse_binds", status=0x0D)  # ESME_RBINDFAIL: retried with the backoff
    transport = await started(SmppTransport("smpp", {"port": smsc.port, "system_id": "esme1", "backoff": FAST_BACKOFF}))
    await wait_for_state(transport, lambda states: states[0]["state"] == "refused" and states[0]["attempts"] >= 2)
    await smsc.command("refuse_binds", status=0, count=0)
    [state] = await wait_for_state(transport, lambda states: states[0]["state"] == "bound")
    assert state["attempts"] == 0 and state["next_attempt"] is None and state["reason"] is None
    assert (await transport.ping())["connected"] is True


@pytest.mark.skipif(not prosody_available(), reason="prosody is not installed (.ci/run installs it)")
async def test_xmpp_wrong_password_is_refused_with_not_authorized_as_its_code(started: Any, tmp_path: Path) -> None:
    prosody = ProsodyServer(tmp_path / "prosody", free_port())
    prosody.register("dispatcher", "bot-secret")
    prosody.start()
    try:
        backoff = {"initial_delay": 0.2, "max_delay": 1, "connect_timeout": 5}
        config = xmpp_config(prosody, tmp_path / "password", "wrong-secret", backoff=backoff)
        transport = await started(XmppTransport("xmpp", config))
        [state] = await wait_for_state(transport, lambda states: states[0]["state"] == "refused", timeout=60)
        assert state["connection"] == "xmpp" and state["refusal"] == "not-authorized"
        assert "not-authorized" in state["reason"] and state["next_attempt"] is not None
        assert (await transport.ping())["connected"] is False
    finally:
        prosody.stop()


async def test_http_server_on_a_busy_port_is_down_with_the_bind_error(started: Any) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        port = blocker.getsockname()[1]
        transport = await started(HttpTransport("http_in", {"port": port, "backoff": FAST_BACKOFF}))
        [server] = await wait_for_state(transport, lambda states: states[0]["attempts"] >= 1)
        assert server["connection"] == "server" and server["state"] == "down"
        assert "address already in use" in server["reason"].lower()
    finally:
        blocker.close()
    [server] = await wait_for_state(transport, lambda states: states[0]["state"] == "listening")
    assert server["reason"] is None


async def test_http_webhook_state_follows_the_last_delivery(started: Any, link: RecordingLink) -> None:
    peer = WebhookPeer(free_port())
    backoff = {"initial_delay": 0.05, "max_delay": 0.1, "connect_timeout": 2.0}
    config = {"outbound_url": peer.url, "outbound_attempts": 2, "backoff": backoff}
    transport = await started(HttpTransport("http_in", config))

    def webhook() -> dict[str, Any]:
        return next(s for s in transport.connection_state() if s["connection"] == "webhook")

    assert webhook()["state"] == "idle" and (await transport.ping())["connected"] is True
    await transport.handle_outbound_message(outbound("nobody listens"))
    assert webhook()["state"] == "down" and "webhook unreachable" in webhook()["reason"]
    assert webhook()["attempts"] == 2
    await peer.start()
    try:
        peer.fail_next = 2
        await transport.handle_outbound_message(outbound("server errors"))
        assert webhook()["state"] == "failing" and webhook()["refusal"] == 500 and "500" in webhook()["reason"]
        await transport.handle_outbound_message(outbound("goes through"))
        assert webhook()["state"] == "ok" and webhook()["attempts"] == 0 and webhook()["reason"] is None
        peer.expect_auth = "Bearer right"
        await transport.handle_outbound_message(outbound("no credentials"))
        assert webhook()["state"] == "refused" and webhook()["refusal"] == 401
        assert (await transport.ping())["connected"] is False
    finally:
        await peer.stop()


async def test_telnet_server_is_listening(started: Any) -> None:
    transport = await started(TelnetTransport("telnet", {"backoff": FAST_BACKOFF}))
    [server] = await wait_for_state(transport, lambda states: states[0]["state"] == "listening")
    assert server["connection"] == "server"


class _UserTransport(TransportActor):
    """A user transport with no peer connection of its own."""


async def test_a_user_transport_reports_no_peer_until_it_tracks_a_connection(
    started: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gauge = _RecordingGauge()
    monkeypatch.setattr(metrics, "_instruments", type("Fake", (), {"connection_state": gauge})())
    transport = await started(_UserTransport("mine", replica_id="3"))
    info = await transport.ping()
    assert info["connections"] == [] and info["connected"] is None
    link = transport.track_connection("uplink")
    assert gauge.current("mine", "3", "uplink") == "connecting"
    link.enter("refused", "the peer said no", "E42")
    assert gauge.current("mine", "3", "uplink") == "refused"
    [state] = (await transport.ping())["connections"]
    assert (state["state"], state["reason"], state["refusal"]) == ("refused", "the peer said no", "E42")
    link.enter("connected")
    assert gauge.current("mine", "3", "uplink") == "connected"
    assert (await transport.ping())["connected"] is True


class _RecordingGauge:
    """Records ``set`` calls like a ``ray.util.metrics.Gauge`` by tags."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, ...], float] = {}

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.values[(tags["endpoint"], tags["replica"], tags["connection"], tags["state"])] = value

    def current(self, endpoint: str, replica: str, connection: str) -> str:
        [state] = [k[3] for k, v in self.values.items() if k[:3] == (endpoint, replica, connection) and v == 1]
        return state


async def test_stopping_a_supervisor_during_a_long_backoff_ends_at_once_and_says_stopped() -> None:
    async def unreachable() -> None:
        raise OSError("no route to the peer")

    async def never(_: None) -> None:
        raise AssertionError("never connected")

    backoff = BackoffConfig(initial_delay=3600, max_delay=3600, connect_timeout=5)
    supervisor: ConnectionSupervisor[None] = ConnectionSupervisor("peer", unreachable, never, never, backoff)
    supervisor.start()
    await wait_for_state(_Probe(supervisor), lambda states: states[0]["next_attempt"] is not None)
    assert supervisor.state.state == "down" and supervisor.state.reason == "OSError: no route to the peer"
    await asyncio.wait_for(supervisor.stop(grace=7200), 120)  # without waking, it would sleep out the backoff
    assert (supervisor.state.state, supervisor.state.reason) == ("down", "the transport stopped")
    assert supervisor.state.next_attempt is None


class _Probe:
    """Shows a supervisor's state the way a transport's ``connection_state()`` does."""

    def __init__(self, supervisor: ConnectionSupervisor[Any]) -> None:
        self.supervisor = supervisor

    def connection_state(self) -> list[dict[str, Any]]:
        return [self.supervisor.state.to_dict()]
