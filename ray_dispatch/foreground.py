"""Keep a foreground ``ray-dispatch run`` up until it is told to stop, then stop within a bounded time.

It stops on SIGINT, SIGTERM or SIGHUP (drain, then end the actors), and
exits by itself when the deployment was stopped from elsewhere (``ray-dispatch
stop`` in another terminal) or its Ray cluster went away. Draining is bounded
by ``DRAIN_BOUND`` even when Ray died first, so ``run`` never hangs at
``stopping...``.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

WATCH_INTERVAL = 1.0
"""Seconds between checks that the deployment still runs."""

DRAIN_BOUND = 45.0
"""Seconds ``run`` waits for the deployment to drain and stop before it exits anyway."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_until_stopped(
    deployment: Any,
    *,
    ray_address: str | None = None,
    drain_bound: float = DRAIN_BOUND,
    still_running: Callable[[], bool] | None = None,
    on_exit: Callable[[], None] | None = None,
) -> None:
    """Block until a stop signal (then shut ``deployment`` down) or until it is gone (then just return).

    ``still_running`` says whether the deployment still runs (default: Ray's
    GCS at ``ray_address`` accepts a TCP connection and the dispatchers are
    still registered); an exception means Ray is gone. ``on_exit`` runs
    before the process ends without returning (Ray gone, drain abandoned).
    """
    stop = threading.Event()
    check = still_running or functools.partial(_dispatchers_registered, deployment, ray_address)
    gone: list[tuple[str, bool]] = []  # (why, whether Ray itself is gone)
    # The handler only appends to a list: calling ``stop.set()`` there could deadlock, because the
    # handler runs in the main thread, which may hold ``stop``'s own lock inside ``stop.wait``.
    signalled: list[int] = []
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: signalled.append(signum))
    watcher = threading.Thread(target=_watch, args=(deployment.name, check, stop, gone), name="run-watch", daemon=True)
    watcher.start()
    while not signalled and not stop.wait(0.5):
        pass
    stop.set()  # ends the watcher when a signal ended the wait
    if not gone and ray_address and not _answers(ray_address):
        gone.append((f"its Ray cluster at {ray_address} is gone: nothing left to drain; exiting", True))
    if gone:
        why, ray_gone = gone[0]
        if not ray_gone:
            click.echo(why)
            return
        click.echo(f"error: {why}", err=True)
        _exit_now(1, on_exit)
    for sig in _STOP_SIGNALS:  # a second Ctrl-C while draining ends the process at once
        signal.signal(sig, signal.SIG_DFL)
    click.echo("stopping...")
    if _shutdown_within(deployment, drain_bound):
        click.echo("stopped")
        return
    click.echo(
        f"error: the deployment did not stop within {drain_bound:.0f} s (is its Ray cluster still running?);"
        " exiting without waiting for it",
        err=True,
    )
    _exit_now(1, on_exit)


def _answers(address: str) -> bool:
    """Whether something accepts a TCP connection at ``host:port`` (Ray's GCS) within 2 s."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2.0):
            return True
    except (OSError, ValueError):
        return False


def _exit_now(code: int, on_exit: Callable[[], None] | None) -> None:
    """Exit without Ray's exit hooks, which would wait on the same unanswering cluster (``on_exit`` first)."""
    if on_exit is not None:
        on_exit()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _dispatchers_registered(deployment: Any, ray_address: str | None) -> bool:
    from actors.naming import dispatcher_names

    if ray_address and not _answers(ray_address):
        raise ConnectionError(f"nothing answers at {ray_address}")
    return bool(dispatcher_names(deployment.name, deployment.namespace))


def _watch(name: str, still_running: Callable[[], bool], stop: threading.Event, gone: list[tuple[str, bool]]) -> None:
    """Set ``stop`` (saying why in ``gone``) once the deployment is gone, or Ray is (``still_running`` raised)."""
    while not stop.wait(WATCH_INTERVAL):
        try:
            running = still_running()
        except Exception as exc:
            gone.append((f"the Ray cluster of deployment {name!r} stopped answering ({exc}); exiting", True))
            stop.set()
            return
        if not running:
            gone.append((f"deployment {name!r} was stopped from elsewhere; exiting", False))
            stop.set()
            return


def _shutdown_within(deployment: Any, seconds: float) -> bool:
    """``deployment.shutdown()`` in a thread; whether it finished within ``seconds``."""
    done = threading.Event()

    def shut_down() -> None:
        try:
            deployment.shutdown(timeout=min(30.0, seconds / 2))
        finally:
            done.set()

    threading.Thread(target=shut_down, name="run-shutdown", daemon=True).start()
    return done.wait(seconds)
