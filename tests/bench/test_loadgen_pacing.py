"""LoadTransport's paced runs, without Ray: a run that is behind schedule still lets the event loop run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors import endpoint as endpoint_module
from actors.loadgen import LoadTransport
from ray_dispatch.core.message import Message
from tests.transports.conftest import RecordingLink


class TickRecordingLink(RecordingLink):
    """A link that confirms at once (never waits, like one with room) and notes a ticker's count per send."""

    def __init__(self, ticks: list[int]) -> None:
        super().__init__()
        self.ticks = ticks
        self.seen: list[int] = []

    async def send(self, direction: str, message: Message) -> asyncio.Future[Any]:
        """Note the ticker's count, then record and confirm ``message``."""
        self.seen.append(self.ticks[0])
        return await super().send(direction, message)


async def test_a_paced_run_behind_schedule_still_lets_other_tasks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # The link's batches go out from another task of the transport's event loop; a paced run
    # that never waited (every message already due) would starve it until the link is full.
    monkeypatch.setattr(endpoint_module, "tune_gc_for_throughput", lambda: False)
    transport = LoadTransport("load", {"yield_every": 50})
    ticks = [0]
    link = TickRecordingLink(ticks)
    transport.use_link(link)

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0)
            ticks[0] += 1

    task = asyncio.get_running_loop().create_task(ticker())
    await asyncio.sleep(0)
    try:
        # A rate no generator keeps up with: the pacing never has a reason to sleep.
        stats = await transport.generate(500, rate=1e9, run="behind")
    finally:
        task.cancel()
    assert stats["offered"] == 500 and len(link.seen) == 500
    assert len(set(link.seen)) >= 500 // 50  # the ticker ran at least once per 50 sends
