"""MO from an SMSC that redelivers what gets no OK: kill the SMPP transport mid-stream, or slow the app: none lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

import ray_dispatch
from ray_dispatch.api import Deployment
from tests.peers.smsc import SmscPeer
from tests.transports.ray_support import echo_deployment_config
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N = 2000


def control(smsc: SmscPeer, cmd: str, **args: Any) -> Any:
    """One command to the test SMSC, from this (synchronous) test."""
    return asyncio.run(smsc.command(cmd, **args))


@pytest.fixture
def smsc(tmp_path: Path) -> Iterator[SmscPeer]:
    with SmscPeer.running(tmp_path) as peer:
        yield peer


def _config(smsc: SmscPeer, ledger: str, namespace: str, app_delay: float = 0.0) -> dict[str, Any]:
    smpp = {
        "port": smsc.port,
        "system_id": "esme1",
        "backoff": {"initial_delay": 0.2, "max_delay": 1.0, "connect_timeout": 5},
        "enquire_link_interval": 5,
        "enquire_link_timeout": 5,
    }
    config = echo_deployment_config("sms", "actors.transports.smpp.SmppTransport", smpp)
    config["endpoints"]["app"] = {
        "class": "actors.testing.LedgerApplication",
        "config": {"ledger": ledger, "namespace": namespace, "delay": app_delay},
    }
    config["dispatcher"] = {"batching": {"max_queued": 100}}
    return config


def _accepted(smsc: SmscPeer) -> list[int]:
    accepted: list[int] = control(smsc, "stream_status")["accepted"]
    return accepted


def _lost(smsc: SmscPeer, ledger: Any) -> list[int]:
    """MO the SMSC got an OK for that never reached the application (an OK means it is safe)."""
    arrived = set(ray.get(ledger.by_user.remote()))
    return [index for index in _accepted(smsc) if f"+2783{index:07d}" not in arrived]


def test_killing_the_smpp_transport_twice_mid_stream_loses_no_mo(ledger: Any, ledger_name: str, smsc: SmscPeer) -> None:
    namespace = ray.get_runtime_context().namespace
    dep: Deployment = ray_dispatch.deploy(
        _config(smsc, ledger_name, namespace), name="kill-smpp-transport", health_interval=0.5
    )
    try:
        assert wait_for(lambda: control(smsc, "status")["sessions"], 30), "the transport never bound"
        control(smsc, "stream", count=N, rate=400, window=50, response_timeout=3)
        for share in (0.3, 0.6):
            assert wait_for(lambda share=share: len(_accepted(smsc)) > N * share, 120), "the stream stalled"
            ray.kill(dep.endpoint("sms"), no_restart=False)
        assert wait_for(lambda: len(_accepted(smsc)) == N, 240), control(smsc, "stream_status")
        assert _lost(smsc, ledger) == []
        assert control(smsc, "status")["binds"] >= 3  # the restarted transport bound again, twice
    finally:
        dep.shutdown()


def test_a_slow_application_under_a_burst_neither_stalls_nor_loses_mo(
    ledger: Any, ledger_name: str, smsc: SmscPeer
) -> None:
    namespace = ray.get_runtime_context().namespace
    dep: Deployment = ray_dispatch.deploy(
        _config(smsc, ledger_name, namespace, app_delay=0.2), name="slow-app-smpp", health_interval=0.5
    )
    try:
        assert wait_for(lambda: control(smsc, "status")["sessions"], 30), "the transport never bound"
        control(smsc, "stream", count=N, rate=400, window=200, response_timeout=3)
        assert wait_for(lambda: len(_accepted(smsc)) == N, 240), control(smsc, "stream_status")
        assert _lost(smsc, ledger) == []
        transport = dep.endpoint("sms")
        [state] = ray.get(transport.connection_state.remote())
        smsc_sessions = control(smsc, "status")["sessions"]
        assert (state["state"] == "bound") == bool(smsc_sessions), (state, smsc_sessions)  # status is truthful
        assert ray.get(transport.is_bound.remote())
    finally:
        dep.shutdown()
