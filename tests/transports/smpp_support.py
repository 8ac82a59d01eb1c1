"""Helpers for the SMPP transport tests: the fast backoff, outbound messages, GSM text as hex."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from peers.smsc import SmscPeer

from actors.transports.smpp_codec import gsm_septets
from ray_dispatch.core.message import TransportUserMessage

FAST_BACKOFF = {"initial_delay": 0.1, "max_delay": 0.5, "connect_timeout": 3.0}


def outbound(content: str, to_addr: str = "27820001111", **kw: Any) -> TransportUserMessage:
    """An outbound SMS from ``1234`` (the transport is named ``smpp``)."""
    return TransportUserMessage(
        to_addr=to_addr, from_addr="1234", content=content, transport_name="smpp", transport_type="sms", **kw
    )


def gsm_hex(text: str) -> str:
    """``text`` as unpacked GSM 03.38 septets, in hex (what the test SMSC's ``mo`` takes)."""
    septets = gsm_septets(text)
    assert septets is not None
    return b"".join(septets).hex()


async def eventually_status(
    smsc: SmscPeer, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
) -> dict[str, Any]:
    """Poll (bounded) the SMSC's ``status`` until ``predicate`` holds; return it or fail the test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status: dict[str, Any] = await smsc.command("status")
        if predicate(status):
            return status
        if loop.time() > deadline:
            raise AssertionError(f"the SMSC's status did not get there within {timeout}s: {status}")
        await asyncio.sleep(0.05)
