"""Pieces shared by the real transports: backoff config, secrets and a connection supervisor.

``ConnectionSupervisor`` keeps one connection to a peer alive: it connects
(each attempt bounded by ``connect_timeout``), runs the session until the peer
goes away, then waits a growing, capped delay and tries again, for as long as
the transport runs. Outbound code waits (bounded) on ``wait_connected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from pydantic import Field

from actors.connection import ConnectionState, PeerRefused
from ray_dispatch.core.retry import Backoff, BackoffPolicy
from ray_dispatch.core.secrets import Secret as Secret  # re-exported: transports declare their secrets with it

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")


class BackoffConfig(BackoffPolicy):
    """How a transport retries a lost peer: the ``BackoffPolicy`` keys, plus one attempt's bound.

    Attributes:
        initial_delay: seconds before the first retry (default 0.5).
        max_delay: the delay never grows beyond this many seconds (default 30).
        factor: each failed attempt multiplies the delay by this (default 2).
        jitter: share of each delay drawn at random, 0 to 1 (default 0).
        connect_timeout: one connection attempt gives up after this many seconds (default 10).
    """

    connect_timeout: float = Field(10.0, gt=0)


class SendWindow:
    """At most ``size`` outbound sends in flight, each a task; closing waits, then cancels the rest.

    A transport ``reserve``s a place (waiting while the window is full, which
    holds the dispatcher back), ``start``s the send as a task that frees the
    place when it ends, and ``close``s the window at teardown.
    """

    def __init__(self, size: int) -> None:
        self._places = asyncio.Semaphore(size)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def reserve(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a place; return whether one was reserved."""
        try:
            await asyncio.wait_for(self._places.acquire(), max(0.0, timeout))
        except TimeoutError:
            return False
        return True

    async def start(self, send: Coroutine[Any, Any, R]) -> asyncio.Task[R]:
        """Run ``send`` in the reserved place as a task; return it once it has run to its first wait.

        Letting it start before the caller takes the next message keeps sends in order.
        """
        task = asyncio.get_running_loop().create_task(send)
        task.add_done_callback(lambda _: self._places.release())
        self.track(task)
        await asyncio.sleep(0)
        return task

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` (one that holds no place) to be waited for or cancelled by ``close``."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, grace: float = 5.0) -> None:
        """Wait up to ``grace`` seconds for the tasks, then cancel what is left (their sends nack)."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class BoundedMap(Generic[K, V]):
    """A mapping that forgets its oldest entries beyond ``limit`` (for id correlation)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[K, V] = OrderedDict()

    def __setitem__(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def get(self, key: K, default: V | None = None) -> V | None:
        """Return the value for ``key``, or ``default``."""
        return self._items.get(key, default)

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove and return the value for ``key``, or ``default``."""
        return self._items.pop(key, default)

    def __len__(self) -> int:
        return len(self._items)


class ConnectionSupervisor(Generic[T]):
    """Keeps one connection alive: connect, serve until lost, back off, repeat; keeps its ``state``.

    ``state`` (a ``ConnectionState``) says what the connection is doing: ``up_state``
    once connected; ``refused`` when ``connect`` raised ``PeerRefused`` (the
    peer's reason and code); ``down`` when it raised anything else (the OS
    error), took longer than ``connect_timeout``, or the session ended (the
    reason ``serve`` returned). ``attempts`` and ``next_attempt`` follow the backoff.

    Args:
        name: how log lines name this connection (never includes secrets).
        connect: opens the connection and returns it (each call bounded by
            ``backoff.connect_timeout``).
        serve: runs the session on an open connection; returns (optionally why) or raises when it is lost.
        close: closes a connection (called when the supervisor stops or ``serve`` ends).
        backoff: delays between attempts.
        state: the state to keep up to date (default: a new one named ``name``).
        up_state: the state an open connection is in (``connected``, ``bound``, ``listening``).
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], Awaitable[T]],
        serve: Callable[[T], Awaitable[str | None]],
        close: Callable[[T], Awaitable[None]],
        backoff: BackoffConfig,
        state: ConnectionState | None = None,
        up_state: str = "connected",
    ) -> None:
        self.name = name
        self._connect = connect
        self._serve = serve
        self._close = close
        self._backoff = Backoff(backoff)
        self._connect_timeout = backoff.connect_timeout
        self._connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.state = state if state is not None else ConnectionState(name)
        self.up_state = up_state
        self.connection: T | None = None
        self.connects = 0
        self.failures = 0
        self.last_error: str | None = None

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._connected.is_set()

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        self._stopping = False
        self._wake.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"supervise {self.name}")

    async def start_and_wait(self) -> bool:
        """Start connecting, then wait up to one ``connect_timeout`` for the first connection.

        Returns whether it is connected; if not, it keeps trying in the background.
        """
        self.start()
        return await self.wait_connected(self._connect_timeout)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reconnecting and close the current connection.

        The connection is closed first so the session ends by itself; the
        supervising task is cancelled only if it has not ended within ``grace`` seconds.
        """
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        connection = self.connection
        if connection is not None:
            await _close_quietly(self._close, connection, self.name)
        await asyncio.wait({task}, timeout=grace)
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self.state.next_attempt = None
        self.state.enter("down", "the transport stopped")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for an open connection; return whether there is one."""
        if self._connected.is_set():
            return True
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def connection_lost(self) -> None:
        """Mark the connection as gone now (``serve`` is expected to end soon)."""
        self._connected.clear()

    async def _run(self) -> None:
        while not self._stopping:
            connection: T | None = None
            retry_at: float | None = None
            self.state.attempts += 1
            self.state.next_attempt = None
            try:
                connection = await self._open()
                self.connection = connection
                self.connects += 1
                self._backoff.reset()
                self.state.enter(self.up_state)
                self._connected.set()
                log.info("%s: connected", self.name)
                reason = await self._serve(connection)
                if self._stopping:
                    log.info("%s: closed", self.name)
                else:
                    self.state.enter("down", reason or "the connection was lost")
                    log.warning("%s: connection lost (%s)", self.name, self.state.reason)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if isinstance(exc, PeerRefused):
                    self.state.enter("refused", str(exc), exc.code)
                    retry_at = exc.retry_at
                else:
                    self.state.enter("down", self.last_error)
                log.warning("%s: %s", self.name, self.last_error)
            finally:
                self._connected.clear()
                self.connection = None
                if connection is not None and not self._stopping:
                    await _close_quietly(self._close, connection, self.name)
            if not self._stopping:
                delay = self._backoff.next_delay()
                if retry_at is not None:
                    delay = max(delay, retry_at - time.time())
                self.state.next_attempt = time.time() + delay
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _open(self) -> T:
        try:
            return await asyncio.wait_for(self._connect(), self._connect_timeout)
        except TimeoutError as exc:
            if str(exc):
                raise
            raise TimeoutError(f"no connection within {self._connect_timeout}s") from None


async def _close_quietly(close: Callable[[Any], Awaitable[None]], connection: Any, name: str) -> None:
    try:
        await asyncio.wait_for(close(connection), 5.0)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("%s: closing failed: %s", name, exc)
