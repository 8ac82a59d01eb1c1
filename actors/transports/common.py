"""Pieces shared by the real transports: backoff config, secrets and a connection supervisor.

``ConnectionSupervisor`` keeps one connection to a peer alive: it connects
(each attempt bounded by ``connect_timeout``), runs the session until the peer
goes away, then waits a growing, capped delay and tries again, for as long as
the transport runs. Outbound code waits (bounded) on ``wait_connected``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from pydantic import Field

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
    """Keeps one connection alive: connect, serve until lost, back off, repeat.

    Args:
        name: how log lines name this connection (never includes secrets).
        connect: opens the connection and returns it (each call bounded by
            ``backoff.connect_timeout``).
        serve: runs the session on an open connection; returns or raises when it is lost.
        close: closes a connection (called when the supervisor stops or ``serve`` ends).
        backoff: delays between attempts.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], Awaitable[T]],
        serve: Callable[[T], Awaitable[None]],
        close: Callable[[T], Awaitable[None]],
        backoff: BackoffConfig,
    ) -> None:
        self.name = name
        self._connect = connect
        self._serve = serve
        self._close = close
        self._backoff = Backoff(backoff)
        self._connect_timeout = backoff.connect_timeout
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
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
            try:
                connection = await asyncio.wait_for(self._connect(), self._connect_timeout)
                self.connection = connection
                self.connects += 1
                self._backoff.reset()
                self._connected.set()
                log.info("%s: connected", self.name)
                await self._serve(connection)
                if self._stopping:
                    log.info("%s: closed", self.name)
                else:
                    log.warning("%s: connection lost", self.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s: %s", self.name, self.last_error)
            finally:
                self._connected.clear()
                self.connection = None
                if connection is not None and not self._stopping:
                    await _close_quietly(self._close, connection, self.name)
            if not self._stopping:
                await asyncio.sleep(self._backoff.next_delay())


async def _close_quietly(close: Callable[[Any], Awaitable[None]], connection: Any, name: str) -> None:
    try:
        await asyncio.wait_for(close(connection), 5.0)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("%s: closing failed: %s", name, exc)
