"""Start local test peers for the real-transport examples, then run the deployment.

    python examples/run_peers.py                                  # examples/seed_real.yaml
    python examples/run_peers.py examples/multi_country_smpp.yaml
    python examples/run_peers.py --peers-only                     # peers only; run ray-dispatch yourself

It reads the config's ``endpoints``: for every SMPP transport it starts a test
SMSC (tests/peers/smsc.py, its own process) on that transport's port, with a
control port 1000 above it; for every XMPP transport it starts a throwaway
prosody (config and data in a temp dir) on that port and registers the
transport's account and a demo user ``alice@<domain>`` (password ``alice``).
It sets ``SMPP_PASSWORD`` / ``XMPP_PASSWORD`` when unset, runs
``ray-dispatch run CONFIG`` until Ctrl-C (or SIGTERM / SIGHUP), and always
stops every peer it started and the deployment it ran. Talk to the running deployment from another terminal:

    python examples/run_peers.py mo 3775 +27831234567 4321 "hello"     # an MO via SMSC control port 3775
    python examples/run_peers.py submits 3775                           # what the SMSC was sent
    python examples/run_peers.py chat 5222 dispatcher@localhost "hi"    # chat as alice, print replies
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from peers.prosody import ProsodyServer  # noqa: E402
from peers.smsc import SmscPeer  # noqa: E402

SMPP_CLASS = "actors.transports.smpp.SmppTransport"
XMPP_CLASS = "actors.transports.xmpp.XmppTransport"
CONTROL_OFFSET = 1000
RUN_STOP_TIMEOUT = 30.0
"""Seconds ``ray-dispatch run`` gets to drain after we pass it SIGINT, before it is killed."""


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C, so every peer is stopped."""


def _stop_on_signal(signum: int, _frame: Any) -> None:
    raise Stopped(signal.Signals(signum).name)


def _run_until_stopped(command: list[str]) -> int:
    """Run ``command``; on Ctrl-C, SIGTERM or SIGHUP pass it SIGINT and wait (bounded) for it to drain."""
    child = subprocess.Popen(command)
    try:
        return child.wait()
    except (KeyboardInterrupt, Stopped):
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=RUN_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"ray-dispatch run did not stop within {RUN_STOP_TIMEOUT:.0f}s; killing it (pid {child.pid})")
            child.kill()
            child.wait()
        return 0


def _endpoints(config_path: Path, class_path: str) -> list[tuple[str, dict[str, Any]]]:
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    endpoints = raw.get("endpoints") or {}
    return [(name, spec.get("config") or {}) for name, spec in endpoints.items() if spec.get("class") == class_path]


def up(config_path: Path, peers_only: bool) -> int:
    """Start the peers the config needs, run the deployment, stop everything on the way out."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    os.environ.setdefault("SMPP_PASSWORD", "smppdemo")  # SMPP allows at most 8 octets
    os.environ.setdefault("XMPP_PASSWORD", "xmpp-demo")
    smscs: list[SmscPeer] = []
    servers: list[ProsodyServer] = []
    workdir = Path(tempfile.mkdtemp(prefix="ray_dispatch_peers_"))
    try:
        for name, config in _endpoints(config_path, SMPP_CLASS):
            port = int(config.get("port", 2775))
            if any(s.port == port for s in smscs):
                continue
            smsc = SmscPeer(port, port + CONTROL_OFFSET, workdir / f"smsc-{port}.log")
            smsc.start()
            smscs.append(smsc)
            print(f"SMSC for {name}: 127.0.0.1:{port} (control port {port + CONTROL_OFFSET})")
        for name, config in _endpoints(config_path, XMPP_CLASS):
            port = int(config.get("port", 5222))
            user, domain = str(config["jid"]).split("@", 1)
            server = ProsodyServer(workdir / f"prosody-{port}", port, domain)
            server.register(user, os.environ["XMPP_PASSWORD"])
            server.register("alice", "alice")
            server.start()
            servers.append(server)
            print(f"prosody for {name}: 127.0.0.1:{port}, users {user}@{domain} and alice@{domain} (password alice)")
        if peers_only:
            print("peers running; press Ctrl-C to stop them", flush=True)
            try:
                signal.pause()
            except (KeyboardInterrupt, Stopped):
                return 0
        command = [str(Path(sys.executable).with_name("ray-dispatch")), "run", str(config_path)]
        if not Path(command[0]).exists():
            command = [sys.executable, "-m", "ray_dispatch.cli", "run", str(config_path)]
        print("running:", " ".join(command), flush=True)
        return _run_until_stopped(command)
    except Stopped:
        return 0
    finally:
        for smsc in smscs:
            smsc.stop()
        for server in servers:
            server.stop()
        print(f"peers stopped (logs in {workdir})", flush=True)


async def _mo(control_port: int, source: str, destination: str, text: str) -> None:
    from actors.transports.smpp_codec import encode_message

    smsc = SmscPeer(control_port - CONTROL_OFFSET, control_port)
    encoded = encode_message(text)
    for part in encoded.parts:
        status = await smsc.command(
            "mo",
            source_addr=source,
            destination_addr=destination,
            short_message=part.short_message.hex(),
            esm_class=part.esm_class,
            data_coding=encoded.data_coding,
        )
        print(f"deliver_sm answered with command_status {status}")


async def _submits(control_port: int) -> None:
    from actors.transports.smpp_codec import decode_text

    smsc = SmscPeer(control_port - CONTROL_OFFSET, control_port)
    for submit in await smsc.command("submits"):
        data = bytes.fromhex(submit["short_message"])
        if submit["esm_class"] & 0x40:
            data = data[data[0] + 1 :]
        text = decode_text(submit["data_coding"], data, "gsm0338")
        fields = {k: submit.get(k) for k in ("source_addr", "destination_addr", "status", "message_id")}
        print(json.dumps({**fields, "text": text}, ensure_ascii=False))


async def _chat(port: int, to: str, text: str, wait: float) -> None:
    from peers.xmpp_client import XmppPeer

    domain = to.split("@", 1)[1]
    peer = XmppPeer(f"alice@{domain}", "alice", port)
    await peer.connect()
    try:
        peer.send(to, text)
        for body in await peer.wait_for_bodies(1, timeout=wait):
            print(f"{to}: {body}")
    finally:
        await peer.close()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    argv = sys.argv[1:] if argv is None else argv
    tools = argparse.ArgumentParser(prog="run_peers.py", description="Talk to running local peers.")
    sub = tools.add_subparsers(dest="command", required=True)
    mo = sub.add_parser("mo", help="send an MO message through a running test SMSC")
    mo.add_argument("control_port", type=int)
    mo.add_argument("source")
    mo.add_argument("destination")
    mo.add_argument("text")
    submits = sub.add_parser("submits", help="print what a running test SMSC was sent")
    submits.add_argument("control_port", type=int)
    chat = sub.add_parser("chat", help="chat as alice through a running prosody; print the reply")
    chat.add_argument("port", type=int)
    chat.add_argument("to")
    chat.add_argument("text")
    chat.add_argument("--wait", type=float, default=15.0)
    if argv and argv[0] in sub.choices:
        args = tools.parse_args(argv)
        if args.command == "mo":
            asyncio.run(_mo(args.control_port, args.source, args.destination, args.text))
        elif args.command == "submits":
            asyncio.run(_submits(args.control_port))
        else:
            asyncio.run(_chat(args.port, args.to, args.text, args.wait))
        return 0
    runner = argparse.ArgumentParser(
        prog="run_peers.py", description="Start the local peers CONFIG needs and run it (see also: mo, submits, chat)."
    )
    runner.add_argument("config", nargs="?", default=str(REPO / "examples" / "seed_real.yaml"))
    runner.add_argument("--peers-only", action="store_true", help="start the peers but not ray-dispatch")
    args = runner.parse_args(argv)
    return up(Path(args.config).resolve(), args.peers_only)


if __name__ == "__main__":
    sys.exit(main())
