"""``examples/run_peers.py`` stops every peer, and the deployment it ran, on SIGINT, SIGTERM and SIGHUP."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.peers.net import free_port

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path) -> tuple[Path, int, int]:
    smpp_port, xmpp_port = free_port(), free_port()
    config = yaml.safe_load((REPO / "examples" / "seed_real.yaml").read_text(encoding="utf-8"))
    config["endpoints"]["smpp_transport"]["config"]["port"] = smpp_port
    config["endpoints"]["xmpp_transport"]["config"]["port"] = xmpp_port
    path = tmp_path / "seed_real.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, smpp_port, xmpp_port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start(args: list[str], ready: str, timeout: float) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "run_peers.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if ready in line:
            return process, lines
    process.kill()
    raise AssertionError(f"run_peers.py never printed {ready!r}: {''.join(lines)}")


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_peers_only_stops_every_peer_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    path, smpp_port, xmpp_port = _config(tmp_path)
    process, _ = _start(["--peers-only", str(path)], "peers running", timeout=60)
    children = [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
    assert children and _listening(smpp_port) and _listening(xmpp_port)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and "peers stopped" in output
    assert _wait_gone(children, 15) == []
    assert not _listening(smpp_port) and not _listening(xmpp_port)


@pytest.mark.slow
def test_sigterm_stops_the_deployment_and_every_peer(tmp_path: Path) -> None:
    path, smpp_port, xmpp_port = _config(tmp_path)
    process, lines = _start([str(path)], "running; press Ctrl-C", timeout=180)
    descendants = [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
    assert len(descendants) > 3, lines  # the SMSC, prosody, ray-dispatch run and its local Ray
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=90)
    assert "peers stopped" in output
    assert _wait_gone(descendants, 30) == []
    assert not _listening(smpp_port) and not _listening(xmpp_port)
