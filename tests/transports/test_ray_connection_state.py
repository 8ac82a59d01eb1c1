"""Connection state through ``dep.status()`` and ``ray-dispatch status`` / ``send`` on Ray, against real peers.

SMPP, one deployment: first no SMSC listens (``down``, the OS error), then an
SMSC that refuses the bind with ESME_RINVPASWD (``refused``, its status).
XMPP: a wrong password against prosody (``refused``, ``not-authorized``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from peers.net import free_port
from peers.prosody import ProsodyServer, prosody_available
from peers.smsc import SmscPeer
from peers.tcp_gate import TcpGate

from ray_dispatch.api import Deployment
from ray_dispatch.cli import main

from .ray_support import deploy, echo_deployment_config, shutdown
from .xmpp_support import xmpp_config

pytestmark = pytest.mark.ray

ESME_RINVPASWD = 0x0E


async def cli(*args: str) -> Result:
    """Run ``ray-dispatch`` in-process, off the event loop (the gate and SMSC here keep serving)."""
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), catch_exceptions=False)


async def replica_status(
    deployment: Deployment, predicate: Callable[[dict[str, Any]], bool], transport: str = "smpp_transport"
) -> dict[str, Any]:
    """Poll (bounded, generously) ``dep.status()`` until replica 0 of ``transport`` satisfies ``predicate``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        status = await asyncio.to_thread(deployment.status)
        replica: dict[str, Any] = status["endpoints"][transport]["replicas"]["0"]
        if replica.get("alive") and predicate(replica):
            return replica
        if loop.time() > deadline:
            raise AssertionError(f"the transport's status did not get there within 60s: {replica}")
        await asyncio.sleep(0.5)


def state_of(replica: dict[str, Any]) -> str:
    return str(replica["connections"][0]["state"]) if replica.get("connections") else "none"


async def test_status_shows_smpp_down_then_refused_with_the_reason(ray_session: None, tmp_path: Path) -> None:
    smsc = SmscPeer(free_port(), free_port(), tmp_path / "smsc.log")
    gate = TcpGate(smsc.port)  # shut: nothing listens on gate.port yet
    config = echo_deployment_config(
        "smpp_transport",
        "actors.transports.smpp.SmppTransport",
        {
            "port": gate.port,
            "system_id": "esme1",
            "outbound_timeout": 5,
            "backoff": {"initial_delay": 0.2, "max_delay": 1, "connect_timeout": 2},
        },
    )
    deployment = await deploy(config)
    target = ["--name", deployment.name, "--namespace", deployment.namespace]
    try:
        down = await replica_status(deployment, lambda r: state_of(r) == "down")
        assert down["connected"] is False and down["connections"][0]["connection"] == "TRX"
        assert "ConnectionRefusedError" in down["connections"][0]["reason"]

        text = await cli("status", *target)
        assert text.exit_code == 0, text.stderr
        block = text.stdout[text.stdout.index("transport smpp_transport") :]
        assert "[0] alive, NOT CONNECTED  actors.transports.smpp.SmppTransport" in block
        assert "connection TRX: down since " in block and "ConnectionRefusedError" in block

        as_json = json.loads((await cli("status", "--json", *target)).stdout)
        [entry] = as_json["endpoints"]["smpp_transport"]["replicas"]["0"]["connections"]
        assert entry["state"] == "down" and entry["next_attempt"] is not None

        sent = await cli("send", "app", "to an unbound SMSC", "--json", '{"transport_name": "smpp_transport"}', *target)
        assert sent.exit_code == 0, sent.stderr
        assert "  -> outbound:smpp_transport" in sent.stdout
        assert "warning: transport 'smpp_transport' is not connected to its peer (TRX: down since" in sent.stdout

        smsc.start()
        await smsc.command("refuse_binds", status=ESME_RINVPASWD)
        await gate.open()
        refused = await replica_status(deployment, lambda r: state_of(r) == "refused")
        [bind] = refused["connections"]
        assert "ESME_RINVPASWD (0x0000000E)" in bind["reason"] and bind["refusal"] == ESME_RINVPASWD
        assert bind["next_attempt"] - time.time() > 200  # not tried again before permanent_refusal_delay
        assert refused["connected"] is False

        text = await cli("status", *target)
        assert "connection TRX: refused since " in text.stdout and "ESME_RINVPASWD (0x0000000E)" in text.stdout
    finally:
        await shutdown(deployment)
        await gate.shut()
        smsc.stop()


@pytest.mark.skipif(not prosody_available(), reason="prosody is not installed (.ci/run installs it)")
async def test_status_shows_xmpp_refused_not_authorized_for_a_wrong_password(ray_session: None, tmp_path: Path) -> None:
    prosody = ProsodyServer(tmp_path / "prosody", free_port())
    prosody.register("dispatcher", "bot-secret")
    prosody.start()
    deployment = None
    try:
        backoff = {"initial_delay": 0.5, "max_delay": 2, "connect_timeout": 5}
        xmpp = xmpp_config(prosody, tmp_path / "password", "wrong-secret", backoff=backoff)
        config = echo_deployment_config("xmpp_transport", "actors.transports.xmpp.XmppTransport", xmpp)
        deployment = await deploy(config)
        refused = await replica_status(deployment, lambda r: state_of(r) == "refused", "xmpp_transport")
        [session] = refused["connections"]
        assert session["refusal"] == "not-authorized" and "not-authorized" in session["reason"]
        assert refused["connected"] is False
    finally:
        if deployment is not None:
            await shutdown(deployment)
        prosody.stop()
