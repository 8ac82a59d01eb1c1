"""Ray-free helpers for transport tests: a recording dispatcher link and bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage

# tests/peers is imported as the top-level package ``peers`` whatever the rootdir layout.
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers.smsc import SmscPeer

from actors.transports.smpp import SmppTransport

from .smpp_support import FAST_BACKOFF


class RecordingLink:
    """A ``DispatcherLink`` that records what it is given and confirms it at once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Message]] = []
        self._changed = asyncio.Event()
        self.closed = False

    async def send(self, direction: str, message: Message) -> asyncio.Future[Any]:
        self.items.append((direction, message))
        self._changed.set()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def drain(self, timeout: float | None = None) -> bool:
        return True

    async def close(self) -> None:
        self.closed = True

    @property
    def inbound(self) -> list[TransportUserMessage]:
        return [m for d, m in self.items if d == "inbound" and isinstance(m, TransportUserMessage)]

    @property
    def events(self) -> list[TransportEvent]:
        return [m for d, m in self.items if d == "event" and isinstance(m, TransportEvent)]

    def events_about(self, message_id: str, event_type: str | None = None) -> list[TransportEvent]:
        return [
            e
            for e in self.events
            if e.user_message_id == message_id and (event_type is None or e.event_type == event_type)
        ]

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait (bounded) until ``predicate()`` is truthy; return its value or fail the test."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s; recorded: {self.items!r}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))


class HoldingLink(RecordingLink):
    """A link that records what it is given and confirms it only on ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.unconfirmed: list[asyncio.Future[Any]] = []

    async def send(self, direction: str, message: Message) -> asyncio.Future[Any]:
        await super().send(direction, message)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.unconfirmed.append(future)
        return future

    def release(self) -> None:
        """Confirm everything sent so far."""
        for future in self.unconfirmed:
            if not future.done():
                future.set_result(None)


@pytest.fixture
def link() -> RecordingLink:
    return RecordingLink()


@pytest.fixture
def smsc(tmp_path: Path) -> Iterator[SmscPeer]:
    """A test SMSC process on free loopback ports (stopped after the test)."""
    with SmscPeer.running(tmp_path) as peer:
        yield peer


@pytest.fixture
async def make_transport(link: RecordingLink, smsc: SmscPeer) -> AsyncIterator[Any]:
    """Build and start SMPP transports on ``smsc`` and ``link`` (``bound=False``: don't wait for the bind)."""
    started: list[SmppTransport] = []

    async def make(bound: bool = True, **config: Any) -> SmppTransport:
        config = {"port": smsc.port, "system_id": "esme1", "backoff": FAST_BACKOFF, **config}
        transport = SmppTransport("smpp", config)
        transport.use_link(link)
        started.append(transport)
        await transport.start()
        if bound:
            assert await transport.wait_bound(5)
        return transport

    try:
        yield make
    finally:
        for transport in started:
            await transport.stop()
