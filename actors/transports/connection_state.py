"""What a transport's connection to its peer is doing, for status: state, the peer's reason, since when."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConnectionState:
    """What one connection to a peer is doing, why, and since when (for status).

    ``state`` is ``connecting`` (first attempt), ``bound`` / ``connected``, ``refused`` (the
    peer said no: ``reason`` has its own words) or ``down`` (``reason`` has the OS or protocol
    error); it stays what the last attempt left while the next runs. ``since`` is wall-clock
    seconds; ``attempts`` counts attempts since the last success; ``refusal`` is the peer's code
    when it has one (an SMPP command_status); ``next_attempt`` (wall-clock), when set, is when a
    refusal retrying cannot fix is tried again.
    """

    name: str
    state: str = "connecting"
    reason: str | None = None
    since: float = field(default_factory=time.time)
    attempts: int = 0
    refusal: int | None = None
    next_attempt: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def enter(self, state: str, reason: str | None = None, refusal: int | None = None) -> None:
        """Move to ``state`` (``since`` changes only when the state itself does)."""
        if state != self.state:
            self.since = time.time()
        self.state, self.reason, self.refusal = state, reason, refusal
        self.changed.set()
        self.changed = asyncio.Event()

    def to_dict(self) -> dict[str, Any]:
        """The state as plain data (for status and ``ping``)."""
        return {
            "connection": self.name,
            "state": self.state,
            "reason": self.reason,
            "since": self.since,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt,
        }
