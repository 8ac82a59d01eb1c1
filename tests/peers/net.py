"""Small helpers for loopback peers: free ports, bounded polling, subprocess peers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PEERS_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll ``predicate`` (bounded) until truthy; return its value or raise AssertionError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)


def wait_for_port(port: int, timeout: float = 10.0, process: subprocess.Popen[Any] | None = None) -> None:
    """Block (bounded) until something accepts TCP connections on 127.0.0.1:``port``.

    Raises:
        RuntimeError: ``process`` exited, or nothing listened within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"peer process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def start_python_peer(script: str, *args: str, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``tests/peers/<script>`` with this interpreter in its own process group."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, str(PEERS_DIR / script), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Stop a peer we started, by its PID: SIGTERM, then SIGKILL after ``timeout``."""
    if process.poll() is not None:
        return
    try:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout)
    except ProcessLookupError:
        pass
