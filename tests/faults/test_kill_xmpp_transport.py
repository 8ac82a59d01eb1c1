"""Chat messages to the XMPP transport while it is killed twice (Ray restarts it): every one reaches the app."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.peers.net import free_port
from tests.peers.prosody import ProsodyServer, prosody_available
from tests.peers.xmpp_client import XmppPeer
from tests.transports.ray_support import deploy, echo_deployment_config, shutdown, xmpp_transport_config

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    pytest.mark.skipif(not prosody_available(), reason="prosody is not installed (.ci/run installs it)"),
]

N = 600


async def _contents(deployment: Any) -> set[str]:
    received = await deployment.endpoint("app").received.remote()
    return {m["content"] for m in received["messages"]}


async def _wait_for(predicate: Any, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return bool(await predicate())


async def test_killing_the_xmpp_transport_twice_mid_stream_loses_no_message(ray_session: None, tmp_path: Path) -> None:
    # prosody keeps what the transport had not acknowledged (XEP-0198) or could not take while it
    # was down (offline storage), and delivers it at the next login.
    prosody = ProsodyServer(tmp_path / "prosody", free_port(), offline_storage=True)
    prosody.register("dispatcher", "bot-secret")
    prosody.register("alice", "alice-secret")
    prosody.start()
    deployment = None
    alice = XmppPeer("alice@localhost", "alice-secret", prosody.port, send_receipts=False)
    try:
        config = echo_deployment_config(
            "xmpp", "actors.transports.xmpp.XmppTransport", xmpp_transport_config(prosody.port, tmp_path / "password")
        )
        deployment = await deploy(config)
        await alice.connect()
        sent = [f"chat {i}" for i in range(N)]

        async def send_all() -> None:
            for body in sent:
                alice.send("dispatcher@localhost", body)
                await asyncio.sleep(0.002)

        sending = asyncio.create_task(send_all())
        for share in (0.3, 0.6):
            assert await _wait_for(lambda share=share: _arrived_over(deployment, N * share), 120), "stalled"
            ray.kill(deployment.endpoint("xmpp"), no_restart=False)
        await sending
        assert await _wait_for(lambda: _arrived_over(deployment, N - 1), 180)
        assert await _contents(deployment) == set(sent)
    finally:
        await alice.close()
        if deployment is not None:
            await shutdown(deployment)
        prosody.stop()


async def _arrived_over(deployment: Any, count: float) -> bool:
    return len(await _contents(deployment)) > count
