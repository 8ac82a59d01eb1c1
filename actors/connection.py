"""Connection state: what each of a transport's connections to its peer is doing, why, since when.

One model for every transport (SMPP binds, the XMPP session, the HTTP
server and webhook, the telnet server, and user transports through
``TransportActor.track_connection``). ``state`` is one of:

- ``connecting``: the first attempt has not ended yet;
- ``connected`` / ``bound`` (SMPP) / ``listening`` (servers) / ``ok`` (the
  webhook's last delivery went through) / ``idle`` (no webhook delivery yet): up;
- ``refused``: the peer answered and said no; ``reason`` has its own words
  (an SMPP command_status, an XMPP SASL condition such as ``not-authorized``,
  a webhook's 401) and ``refusal`` its code;
- ``down``: the peer cannot be reached (``reason`` has the OS error), or the
  connection was lost;
- ``failing``: the webhook answers, but with errors (5xx, 429).

A state stays what the last attempt left while the next one runs. ``since``
is when the state last changed (wall-clock seconds), ``attempts`` counts the
attempts since the last success, and ``next_attempt`` (wall-clock), when
set, is when the next one starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

UP_STATES = frozenset({"connected", "bound", "listening", "ok", "idle"})
"""States in which the connection does its job."""
STATES = ("connecting", "connected", "bound", "listening", "ok", "idle", "refused", "down", "failing")
"""Every state a connection can be in (the metric ``ray_dispatch_connection_state`` has one series each)."""


class PeerRefused(ConnectionError):
    """The peer answered and said no: the text has its reason, ``code`` its code (an int or a name).

    ``retry_at`` (wall-clock seconds), when set, is the earliest time another
    attempt is worth making (a refusal retrying soon cannot fix).
    """

    def __init__(self, reason: str, code: int | str | None = None, retry_at: float | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.retry_at = retry_at


@dataclass
class ConnectionState:
    """What one connection to a peer is doing, why, and since when (see the module docstring).

    ``observer``, when set, is called after every change (the metric gauge).
    """

    name: str
    state: str = "connecting"
    reason: str | None = None
    since: float = field(default_factory=time.time)
    attempts: int = 0
    refusal: int | str | None = None
    next_attempt: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    observer: Callable[[ConnectionState], None] | None = field(default=None, repr=False)

    @property
    def up(self) -> bool:
        """Whether the connection does its job now (``UP_STATES``)."""
        return self.state in UP_STATES

    def enter(self, state: str, reason: str | None = None, refusal: int | str | None = None) -> None:
        """Move to ``state`` (``since`` changes only when the state itself does); wake waiters on ``changed``."""
        if state not in STATES:
            raise ValueError(f"unknown connection state {state!r}; known: {', '.join(STATES)}")
        if state != self.state:
            self.since = time.time()
        self.state, self.reason, self.refusal = state, reason, refusal
        if state in UP_STATES:
            self.attempts = 0
            self.next_attempt = None
        self.changed.set()
        self.changed = asyncio.Event()
        if self.observer is not None:
            self.observer(self)

    def to_dict(self) -> dict[str, Any]:
        """The state as plain data (for status, ``ping`` and JSON)."""
        return {
            "connection": self.name,
            "state": self.state,
            "up": self.up,
            "reason": self.reason,
            "refusal": self.refusal,
            "since": self.since,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt,
        }


def describe_connection(entry: dict[str, Any], now: float | None = None) -> str:
    """One line about a ``ConnectionState.to_dict()``: state, since when, why, attempts, next try.

    e.g. ``TRX: refused since 00:12:03 (the SMSC refused bind_transceiver: ESME_RINVPASWD
    (0x0000000E)), attempt 3, next try in 295 s``.
    """
    now = time.time() if now is None else now
    text = f"{entry['connection']}: {entry['state']} since {time.strftime('%H:%M:%S', time.localtime(entry['since']))}"
    if entry.get("reason"):
        text += f" ({entry['reason']})"
    if not entry.get("up") and entry.get("attempts"):
        text += f", attempt {entry['attempts']}"
    if entry.get("next_attempt") is not None:
        text += f", next try in {max(0, round(entry['next_attempt'] - now))} s"
    return text


def replica_connected(connections: list[dict[str, Any]]) -> bool | None:
    """Whether every connection of a replica is up; None when it has none (no peer: n/a)."""
    if not connections:
        return None
    return all(entry.get("up") for entry in connections)
