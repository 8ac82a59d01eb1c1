"""A foreground ``ray-dispatch run`` stops within a bound, and leaves when its deployment or Ray is gone.

Each case runs ``run_until_stopped`` in a child process (it installs signal
handlers and may end the process) with a stand-in deployment, so no Ray is needed.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, threading, time
from ray_dispatch.foreground import run_until_stopped

class StandIn:
    name, namespace = "dep", "ns"
    def shutdown(self, timeout):
        print("shutdown called", flush=True)
        if {hang!r}:
            threading.Event().wait()

calls = []
def still_running():
    calls.append(1)
    if len(calls) == 1:  # the watcher runs: the signal handlers are in place
        print("ready", flush=True)
    if {ray_gone!r}:
        raise ConnectionError("GCS at 127.0.0.1:1 did not answer")
    return len(calls) < {checks_until_gone!r}

run_until_stopped(
    StandIn(),
    ray_address={ray_address!r},
    drain_bound=2.0,
    still_running=still_running,
    on_exit=lambda: print("record removed", flush=True),
)
print("returned", flush=True)
"""


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def no_child_left() -> Iterator[None]:
    """End any child a failed test left running."""
    yield
    while STARTED:
        child = STARTED.pop()
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)


def start(
    hang: bool = False, ray_gone: bool = False, checks_until_gone: int = 10**9, ray_address: str | None = None
) -> subprocess.Popen[str]:
    code = CHILD.format(hang=hang, ray_gone=ray_gone, checks_until_gone=checks_until_gone, ray_address=ray_address)
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    STARTED.append(child)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def finish(child: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = child.communicate(timeout=120)
    return child.returncode, out, err


def test_sigterm_drains_and_returns() -> None:
    child = start()
    child.send_signal(signal.SIGTERM)
    code, out, err = finish(child)
    assert code == 0 and err == "", (out, err)
    assert out.splitlines() == ["stopping...", "shutdown called", "stopped", "returned"]


def test_a_drain_that_never_ends_is_abandoned_after_the_bound() -> None:
    child = start(hang=True)
    child.send_signal(signal.SIGHUP)
    code, out, err = finish(child)
    assert code == 1, (out, err)
    assert out.splitlines() == ["stopping...", "shutdown called", "record removed"]
    assert err.strip() == (
        "error: the deployment did not stop within 2 s (is its Ray cluster still running?);"
        " exiting without waiting for it"
    )


def test_a_deployment_stopped_elsewhere_ends_the_run_without_a_second_shutdown() -> None:
    code, out, err = finish(start(checks_until_gone=2))
    assert code == 0 and err == "", (out, err)
    assert "shutdown called" not in out
    assert out.splitlines() == ["deployment 'dep' was stopped from elsewhere; exiting", "returned"]


def test_ray_gone_ends_the_run_with_one_error_line() -> None:
    code, out, err = finish(start(ray_gone=True))
    assert code == 1 and out == "record removed\n", (out, err)
    assert err.strip() == (
        "error: the Ray cluster of deployment 'dep' stopped answering (GCS at 127.0.0.1:1 did not answer); exiting"
    )


def test_a_stop_signal_after_ray_died_exits_at_once_without_draining() -> None:
    with socket.socket() as probe:  # a port nothing listens on: Ray's GCS is gone
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    child = start(ray_address=address)
    child.send_signal(signal.SIGTERM)
    code, out, err = finish(child)
    assert code == 1 and out == "record removed\n", (out, err)
    assert err.strip() == f"error: its Ray cluster at {address} is gone: nothing left to drain; exiting"
