"""A test SMSC (SMPP 3.4 server) on loopback, run in its own process, driven over a control port.

Run: ``python tests/peers/smsc.py --port P --control-port C``. The SMSC
(asyncio streams and smpp34's PDU codec) accepts every bind (transmitter,
receiver, transceiver), answers enquire_link and unbind, records every
submit_sm, answers it with
an increasing decimal message id (or with errors on request), and can send
MO messages and delivery receipts to a bound ESME. The control port speaks
JSON lines: one request object in, one answer object out.

Commands: ``status`` (sessions, binds, enquire_links, and ``deliver_answers``:
how many deliver_sm_resp came back with each command_status), ``submits``, ``mo``, ``receipt``, ``throttle`` (next N
submits get ESME_RTHROTTLED), ``reject`` (next N submits get ``status``),
``hold`` (answer no submit_sm until ``release``),
``auto_receipt`` (send a receipt with this stat word after each accept, or
none: by default no receipt is ever sent), ``receipt_first`` (send the
receipt before the submit_sm_resp).

Misbehaving on request: ``refuse_binds`` (answer the next ``count`` binds, or
all with -1, with ``status``), ``silence`` (every bound session goes quiet:
nothing read is answered, the socket stays open — a dead link only
enquire_link timeouts reveal), ``drop`` (close every session's socket without
an unbind), ``stream`` (send ``count`` MO at ``rate`` per second, at most
``window`` unanswered, from ``+2783`` + the 7-digit index, and deliver again
every one answered with an error, not answered within ``response_timeout``,
or sent on a session that died — as a real SMSC does) and ``stream_status``
(how many the ESME accepted, refused, left unanswered; ``accepted`` lists
the indexes).
``SmscPeer`` starts and stops the process and sends commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: make ``peers`` importable
    sys.path.insert(0, str(HERE.parent))

from peers.net import free_port, start_python_peer, stop_process, wait_for_port  # noqa: E402


class SmscPeer:
    """Test-side handle on a ``smsc.py`` process (start, stop by PID, control)."""

    def __init__(self, port: int, control_port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.control_port = control_port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextmanager
    def running(cls, log_dir: Path) -> Iterator[SmscPeer]:
        """An SMSC on free loopback ports, logging to ``log_dir/smsc.log``, stopped on leaving."""
        peer = cls(free_port(), free_port(), log_dir / "smsc.log")
        peer.start()
        try:
            yield peer
        finally:
            peer.stop()

    def start(self) -> None:
        """Start the SMSC process and wait (bounded) until it listens on both ports."""
        self.process = start_python_peer(
            "smsc.py", "--port", str(self.port), "--control-port", str(self.control_port), log_path=self.log_path
        )
        wait_for_port(self.control_port, 15, self.process)
        wait_for_port(self.port, 15, self.process)

    def stop(self) -> None:
        """Stop the SMSC process by its PID (idempotent)."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    async def command(self, cmd: str, **args: Any) -> Any:
        """Send one control command and return its answer (bounded: 10 s)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.control_port), 5)
        try:
            writer.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            await writer.drain()
            answer = json.loads(await asyncio.wait_for(reader.readline(), 10))
        finally:
            writer.close()
        if "error" in answer:
            raise RuntimeError(f"SMSC control {cmd!r}: {answer['error']}")
        return answer["result"]

    async def wait_for_submits(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll (bounded) until the SMSC recorded at least ``count`` submit_sm; return them."""
        deadline = time.monotonic() + timeout
        while True:
            submits: list[dict[str, Any]] = await self.command("submits")
            if len(submits) >= count or time.monotonic() > deadline:
                return submits
            await asyncio.sleep(0.05)

    async def wait_for_receivers(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll (bounded) until ``count`` sessions that can receive deliver_sm are bound."""
        deadline = time.monotonic() + timeout
        while True:
            sessions = [s for s in (await self.command("status"))["sessions"] if s["can_receive"]]
            if len(sessions) >= count or time.monotonic() > deadline:
                return sessions
            await asyncio.sleep(0.05)


# -- the SMSC process ------------------------------------------------------------------
#
# A minimal SMSC over asyncio streams, using smpp34's PDU codec for submit_sm and
# deliver_sm (smpp34's own server does not read deliver_sm_resp from receiver-only
# binds, so it cannot serve the transmitter+receiver case).

BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER = 0x01, 0x02, 0x09
SUBMIT_SM, DELIVER_SM, UNBIND, ENQUIRE_LINK, GENERIC_NACK = 0x04, 0x05, 0x06, 0x15, 0x80000000
RESP = 0x80000000
ESME_RTHROTTLED, ESME_RINVCMDID = 0x58, 0x03


def _pdu(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


class _Session:
    """One bound (or binding) ESME connection."""

    def __init__(self, smsc: _Smsc, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.smsc = smsc
        self.reader = reader
        self.writer = writer
        self.session_id = uuid.uuid4().hex
        self.system_id = ""
        self.can_receive = False
        self.bound = False
        self.sequence = 0
        self.waiting: dict[int, asyncio.Future[int]] = {}
        self.silent = False

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def run(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(16)
                length, command_id, status, sequence = struct.unpack(">IIII", header)
                body = await self.reader.readexactly(length - 16)
                if not await self.on_pdu(command_id, status, sequence, header + body):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.smsc.sessions.pop(self.session_id, None)
            self.writer.close()
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("the ESME's session ended"))

    async def on_pdu(self, command_id: int, status: int, sequence: int, pdu: bytes) -> bool:
        import smpp34

        if self.silent:
            return True
        if command_id in (BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER) and self.smsc.refuse_binds:
            self.smsc.refuse_binds -= 1
            self.smsc.bind_refusals += 1
            self.send(_pdu(command_id | RESP, self.smsc.refuse_status, sequence))
        elif command_id in (BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER):
            self.system_id = pdu[16:].split(b"\x00", 1)[0].decode("ascii", errors="replace")
            self.can_receive = command_id != BIND_TRANSMITTER
            self.bound = True
            self.smsc.binds += 1
            self.smsc.sessions[self.session_id] = self
            self.send(_pdu(command_id | RESP, 0, sequence, b"TESTSMSC\x00"))
        elif command_id == ENQUIRE_LINK:
            self.smsc.enquire_links += 1
            self.send(_pdu(ENQUIRE_LINK | RESP, 0, sequence))
        elif command_id == UNBIND:
            self.send(_pdu(UNBIND | RESP, 0, sequence))
            await self.writer.drain()
            return False
        elif command_id == SUBMIT_SM:
            await self.smsc.on_submit(self, smpp34.decode(pdu), sequence)
        elif command_id == DELIVER_SM | RESP:
            self.smsc.deliver_answers[f"0x{status:02X}"] = self.smsc.deliver_answers.get(f"0x{status:02X}", 0) + 1
            future = self.waiting.pop(sequence, None)
            if future is not None and not future.done():
                future.set_result(status)
        elif not command_id & RESP:
            self.send(_pdu(GENERIC_NACK, ESME_RINVCMDID, sequence))
        await self.writer.drain()
        return True

    def answer_submit(self, sequence: int, status: int, message_id: str | None) -> None:
        body = message_id.encode() + b"\x00" if message_id is not None else b""
        self.send(_pdu(SUBMIT_SM | RESP, status, sequence, body))

    async def deliver_sm(self, timeout: float = 5.0, **fields: Any) -> int:
        import smpp34

        self.sequence += 1
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting[self.sequence] = future
        self.send(smpp34.DeliverSm(sequence_number=self.sequence, **fields).encode())
        await self.writer.drain()
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.waiting.pop(self.sequence, None)


class _Smsc:
    def __init__(self) -> None:
        self.sessions: dict[str, _Session] = {}
        self.submits: list[dict[str, Any]] = []
        self.next_id = 1000
        self.throttle = 0
        self.reject = 0
        self.reject_status = 0
        self.auto_receipt: str | None = None
        self.binds = 0
        self.enquire_links = 0
        self.hold = False
        self.held: list[tuple[_Session, int, dict[str, Any]]] = []
        self.background: set[asyncio.Task[Any]] = set()
        self.receipt_first = False
        self.refuse_binds = 0
        self.refuse_status = 0
        self.bind_refusals = 0
        self.deliver_answers: dict[str, int] = {}
        self.stream_state: dict[str, Any] = {}

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Session(self, reader, writer).run()

    async def on_submit(self, session: _Session, pdu: Any, sequence: int) -> None:
        record = {
            "session_id": session.session_id,
            "source_addr": pdu.source_addr,
            "destination_addr": pdu.destination_addr,
            "short_message": pdu.short_message.hex(),
            "esm_class": pdu.esm_class,
            "data_coding": pdu.data_coding,
            "registered_delivery": pdu.registered_delivery,
            "tlvs": {str(t.tag): t.value.hex() for t in pdu.tlvs},
            "at": time.monotonic(),
        }
        self.submits.append(record)
        if self.hold:
            self.held.append((session, sequence, record))
            record["status"] = "held"
        elif self.throttle > 0:
            self.throttle -= 1
            record["status"] = "throttled"
            session.answer_submit(sequence, ESME_RTHROTTLED, None)
        elif self.reject > 0:
            self.reject -= 1
            record["status"] = "rejected"
            session.answer_submit(sequence, self.reject_status, None)
        else:
            await self.accept(session, sequence, record)

    async def accept(self, session: _Session, sequence: int, record: dict[str, Any]) -> None:
        self.next_id += 1
        record["message_id"] = str(self.next_id)
        record["status"] = "accepted"
        if self.receipt_first and record["registered_delivery"] & 1:
            # the receipt overtakes the submit_sm_resp (it happens with real SMSCs)
            task = asyncio.get_running_loop().create_task(
                self.send_receipt(
                    record["message_id"], "DELIVRD", True, record["destination_addr"], record["source_addr"]
                )
            )
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            await asyncio.sleep(0.2)
        session.answer_submit(sequence, 0, record["message_id"])
        await session.writer.drain()
        if self.auto_receipt and record["registered_delivery"] & 1:
            # not awaited here: the session's read loop must stay free to read the deliver_sm_resp
            task = asyncio.get_running_loop().create_task(
                self.send_receipt(
                    record["message_id"], self.auto_receipt, True, record["destination_addr"], record["source_addr"]
                )
            )
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    def receiver(self) -> _Session:
        for session in self.sessions.values():
            if session.can_receive:
                return session
        raise RuntimeError("no bound session can receive deliver_sm")

    async def send_mo(self, args: dict[str, Any]) -> int:
        import smpp34

        tlvs = [smpp34.Tlv(int(tag), bytes.fromhex(value)) for tag, value in args.get("tlvs", {}).items()]
        return await self.receiver().deliver_sm(
            destination_addr=args["destination_addr"],
            short_message=bytes.fromhex(args["short_message"]),
            source_addr=args["source_addr"],
            esm_class=int(args.get("esm_class", 0)),
            data_coding=int(args.get("data_coding", 0)),
            tlvs=tlvs,
        )

    async def send_receipt(self, message_id: str, stat: str, use_tlv: bool, source: str, destination: str) -> int:
        text = (
            f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} submit date:2601010000 "
            f"done date:2601010001 stat:{stat} err:000 text:"
        )
        tlvs = {}
        if use_tlv:
            states = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "REJECTD": 8}
            tlvs = {"30": (message_id.encode() + b"\x00").hex(), "1063": bytes((states.get(stat, 7),)).hex()}
        return await self.send_mo(
            {
                "source_addr": source,
                "destination_addr": destination,
                "short_message": text.encode().hex(),
                "esm_class": 0x04,
                "tlvs": tlvs,
            }
        )

    async def control(self, request: dict[str, Any]) -> Any:
        cmd = request.get("cmd")
        if cmd == "status":
            sessions = [
                {"session_id": s.session_id, "system_id": s.system_id, "can_receive": s.can_receive}
                for s in self.sessions.values()
            ]
            return {
                "sessions": sessions,
                "binds": self.binds,
                "bind_refusals": self.bind_refusals,
                "enquire_links": self.enquire_links,
                "deliver_answers": self.deliver_answers,
            }
        if cmd == "submits":
            return self.submits
        if cmd == "mo":
            return await self.send_mo(request)
        if cmd == "receipt":
            return await self.send_receipt(
                request["message_id"], request.get("stat", "DELIVRD"), bool(request.get("tlv", False)), "", ""
            )
        if cmd == "throttle":
            self.throttle = int(request["count"])
            return self.throttle
        if cmd == "reject":
            self.reject, self.reject_status = int(request["count"]), int(request["status"])
            return self.reject
        if cmd == "hold":
            self.hold = True
            return True
        if cmd == "release":
            self.hold = False
            held, self.held = self.held, []
            for session, sequence, record in held:
                await self.accept(session, sequence, record)
            return len(held)
        if cmd == "receipt_first":
            self.receipt_first = bool(request.get("on", True))
            return self.receipt_first
        if cmd == "refuse_binds":
            self.refuse_binds, self.refuse_status = int(request.get("count", -1)), int(request["status"])
            return self.refuse_binds
        if cmd == "silence":
            for session in self.sessions.values():
                session.silent = True
            return len(self.sessions)
        if cmd == "drop":
            dropped = list(self.sessions.values())
            for session in dropped:
                session.writer.transport.abort()
            return len(dropped)
        if cmd == "stream":
            self.start_stream(request)
            return True
        if cmd == "stream_status":
            state = self.stream_state
            return {**{k: v for k, v in state.items() if k != "accepted"}, "accepted": sorted(state["accepted"])}
        if cmd == "auto_receipt":
            self.auto_receipt = request.get("stat")
            return self.auto_receipt
        raise ValueError(f"unknown command {cmd!r}")

    def start_stream(self, request: dict[str, Any]) -> None:
        """Start streaming MO (see ``stream`` in the module docstring) in the background."""
        count = int(request["count"])
        self.stream_state = {"count": count, "accepted": set(), "refused": 0, "unanswered": 0, "sent": 0}
        task = asyncio.get_running_loop().create_task(
            self.stream(
                count,
                float(request.get("rate", 400)),
                int(request.get("window", 50)),
                float(request.get("response_timeout", 5)),
            )
        )
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def stream(self, count: int, rate: float, window: int, response_timeout: float) -> None:
        state = self.stream_state
        todo = list(range(count))
        places = asyncio.Semaphore(window)

        async def deliver(index: int) -> None:
            try:
                state["sent"] += 1
                status = await self.receiver().deliver_sm(
                    timeout=response_timeout,
                    source_addr=f"+2783{index:07d}",
                    destination_addr="4321",
                    short_message=f"mo {index}".encode(),
                )
                if status == 0:
                    state["accepted"].add(index)
                    return
                state["refused"] += 1
            except (RuntimeError, TimeoutError, ConnectionError):
                state["unanswered"] += 1
            finally:
                places.release()
            await asyncio.sleep(0.2)
            todo.append(index)  # deliver it again, later

        pending: set[asyncio.Task[None]] = set()
        while len(state["accepted"]) < count:
            if not todo:
                await asyncio.sleep(0.02)
                continue
            await places.acquire()
            task = asyncio.get_running_loop().create_task(deliver(todo.pop(0)))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(1.0 / rate)

    async def on_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            try:
                answer = {"result": await self.control(json.loads(line))}
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()


async def _main(port: int, control_port: int) -> None:
    smsc = _Smsc()
    control = await asyncio.start_server(smsc.on_control, "127.0.0.1", control_port)
    server = await asyncio.start_server(smsc.on_connect, "127.0.0.1", port)
    async with control, server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    options = parser.parse_args()
    asyncio.run(_main(options.port, options.control_port))
