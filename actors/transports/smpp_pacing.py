"""Pacing of submit_sm: at most ``tps`` per second, and a shared pause after ESME_RTHROTTLED."""

from __future__ import annotations

import asyncio

from actors.transports.common import Backoff, BackoffConfig


class SendPacer:
    """Spaces submit_sm by ``1 / tps`` and pauses them all after ESME_RTHROTTLED."""

    def __init__(self, tps: float | None, throttle_delay: float, throttle_max_delay: float) -> None:
        self.interval = 1.0 / tps if tps else 0.0
        self._next_send = 0.0
        self._paused_until = 0.0
        self._throttle = Backoff(BackoffConfig(initial_delay=throttle_delay, max_delay=throttle_max_delay, factor=2.0))
        self._lock = asyncio.Lock()

    async def wait_turn(self) -> None:
        """Wait until the next submit_sm may go out."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            start = max(loop.time(), self._next_send, self._paused_until)
            delay = start - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_send = max(loop.time(), start) + self.interval

    def throttled(self) -> float:
        """Note an ESME_RTHROTTLED: pause every sender; return the pause."""
        delay = self._throttle.next_delay()
        self._paused_until = max(self._paused_until, asyncio.get_running_loop().time() + delay)
        return delay

    def accepted(self) -> None:
        """Note an accepted submit_sm: the next throttle pause starts small again."""
        self._throttle.reset()
