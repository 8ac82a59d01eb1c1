"""SMPP 3.4 ESME transport (on smpp34: an asyncio client with a Rust core).

Binds as a transceiver, or as a transmitter plus a receiver (``bind_mode``),
and keeps each bind up: a lost bind is retried with backoff while the
transport runs; enquire_link keep-alives and the response timers run in the
smpp34 core.

Outbound: each message is encoded (GSM 03.38 when it fits, else UCS-2, or as
``coding`` says), split into parts with a concatenation UDH or SAR TLVs when
long, and each part is sent as a submit_sm. At most ``window_size`` submit_sm
are outstanding at once, at most ``tps`` are sent per second, and an
``ESME_RTHROTTLED`` answer pauses all sending with growing delays before the
part is tried again. A message waits (up to ``outbound_timeout``) for the bind
to come back rather than fail. When every part is accepted the message is
acked (``sent_message_id`` is the SMSC's id of the first part); a part refused
with another status nacks it. Submits within the window run concurrently, so
they may reach the SMSC in another order (parts carry their numbers).

Inbound: a deliver_sm is a user message (long ones reassembled from their UDH
or SAR parts), unless it is a delivery receipt (``esm_class`` 0x04 or 0x20):
then its ``receipted_message_id`` / ``message_state`` TLVs, or else the
receipt text (``id:... stat:...``), become a delivery report about the message
the SMSC gave that id (for long messages: delivered once every part is,
failed as soon as one part fails).

A part whose bind broke after the SMSC took it but before the answer arrived
is sent again after the rebind: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from actors.endpoint import EndpointConfig, TransportActor
from actors.transports.common import Backoff, BackoffConfig, BoundedMap, ConnectionSupervisor, Secret, SendWindow
from actors.transports.smpp_codec import (
    ESM_CLASS_DELIVERY_RECEIPT,
    ESM_CLASS_INTERMEDIATE_NOTIFICATION,
    ESM_CLASS_RECEIPT_MASK,
    ESM_CLASS_UDHI,
    TLV_MESSAGE_PAYLOAD,
    TLV_SAR_MSG_REF_NUM,
    TLV_SAR_SEGMENT_SEQNUM,
    TLV_SAR_TOTAL_SEGMENTS,
    Coding,
    Concatenation,
    EncodedMessage,
    EncodingError,
    Receipt,
    SplitMode,
    decode_text,
    encode_message,
    id_variants,
    parse_receipt,
    split_udh,
)
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.message import TransportUserMessage

log = logging.getLogger(__name__)

ESME_ROK = 0x00
ESME_RTHROTTLED = 0x58
MAX_PASSWORD_OCTETS = 8
MAX_ADDRESS_OCTETS = 20
COMMAND_STATUS_NAMES = {
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x14: "ESME_RMSGQFUL",
    0x45: "ESME_RSUBMITFAIL",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0xFF: "ESME_RUNKNOWNERR",
}


def describe_status(status: int) -> str:
    """Name an SMPP command_status: ``ESME_RINVDSTADR (0x0000000B)``."""
    return f"{COMMAND_STATUS_NAMES.get(status, 'status')} (0x{status:08X})"


class SmppTransportConfig(EndpointConfig):
    """Config of ``SmppTransport``.

    Attributes:
        host: the SMSC's host (default ``127.0.0.1``).
        port: the SMSC's port (default 2775).
        system_id: the ESME's system_id (at most 15 characters).
        password: where the bind password lives (``{env: NAME}`` or ``{file: PATH}``); none: empty.
        system_type: the bind's system_type (default empty).
        bind_mode: ``transceiver`` (one bind) or ``transmitter_receiver`` (two binds).
        addr_ton: the bind's addr_ton. addr_npi: its addr_npi. address_range: its address_range.
        source_addr: source address of outbound messages without a ``from_addr`` (default empty).
        source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi: numbering of outbound addresses.
        service_type: service_type of submit_sm (default empty).
        coding: ``auto`` (GSM 03.38 when possible, else UCS-2), ``gsm0338``, ``ucs2`` or ``latin1``.
        long_messages: split long messages with a concatenation ``udh`` (default) or ``sar`` TLVs.
        max_parts: longer messages are nacked (default 10).
        default_alphabet: what ``data_coding`` 0 means in deliver_sm: ``gsm0338``, ``latin1`` or ``ascii``.
        registered_delivery: ask the SMSC for delivery receipts (default true).
        window_size: most submit_sm awaiting their response at once (default 10).
        tps: most submit_sm per second on the transmitting bind (default none: unlimited).
        throttle_delay: first pause after ESME_RTHROTTLED, in seconds; doubles per repeat (default 1).
        throttle_max_delay: longest pause after ESME_RTHROTTLED (default 30).
        outbound_timeout: seconds a message may take to be accepted, waiting for a bind included (default 60).
        request_timeout: seconds to wait for one submit_sm_resp before sending the part again (default 30).
        transport_type: the ``transport_type`` of inbound messages (default ``sms``).
        remember_sent: how many SMSC message ids to remember for receipts (default 100000).
        inbound_part_timeout: seconds to keep parts of an incomplete long inbound message (default 300).
        backoff: delays between bind attempts (``connect_timeout`` bounds one attempt).
    """

    host: str = "127.0.0.1"
    port: int = Field(2775, ge=1, le=65535)
    system_id: str = Field(..., min_length=1, max_length=15)
    password: Secret | None = None
    system_type: str = Field("", max_length=12)
    bind_mode: Literal["transceiver", "transmitter_receiver"] = "transceiver"
    addr_ton: int = Field(0, ge=0, le=255)
    addr_npi: int = Field(0, ge=0, le=255)
    address_range: str = Field("", max_length=40)
    source_addr: str = Field("", max_length=20)
    source_addr_ton: int = Field(0, ge=0, le=255)
    source_addr_npi: int = Field(0, ge=0, le=255)
    dest_addr_ton: int = Field(1, ge=0, le=255)
    dest_addr_npi: int = Field(1, ge=0, le=255)
    service_type: str = Field("", max_length=5)
    coding: Coding = "auto"
    long_messages: SplitMode = "udh"
    max_parts: int = Field(10, ge=1, le=255)
    default_alphabet: Literal["gsm0338", "latin1", "ascii"] = "gsm0338"
    registered_delivery: bool = True
    window_size: int = Field(10, ge=1, le=1000)
    tps: float | None = Field(None, gt=0)
    throttle_delay: float = Field(1.0, gt=0)
    throttle_max_delay: float = Field(30.0, gt=0)
    outbound_timeout: float = Field(60.0, gt=0)
    request_timeout: float = Field(30.0, gt=0)
    transport_type: str = "sms"
    remember_sent: int = Field(100_000, ge=1)
    inbound_part_timeout: float = Field(300.0, gt=0)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)


@dataclass
class _Session:
    """One bound SMPP session: the smpp34 client and its bound handle."""

    client: Any
    smsc: Any


@dataclass
class _LongMessage:
    """Delivery state of a message sent in several parts."""

    total: int
    delivered: set[str] = field(default_factory=set)
    reported_pending: bool = False


@dataclass
class _InboundParts:
    """Parts received so far of a long inbound message."""

    total: int
    first_seen: float
    texts: dict[int, str] = field(default_factory=dict)


class _SendPacer:
    """Spaces submit_sm by ``1 / tps`` and pauses them all after ESME_RTHROTTLED."""

    def __init__(self, tps: float | None, throttle_delay: float, throttle_max_delay: float) -> None:
        self.interval = 1.0 / tps if tps else 0.0
        self._next_send = 0.0
        self._paused_until = 0.0
        self._throttle = Backoff(BackoffConfig(initial_delay=throttle_delay, max_delay=throttle_max_delay, factor=2.0))
        self._lock = asyncio.Lock()

    async def wait_turn(self) -> None:
        """Wait until the next submit_sm may go out."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            start = max(loop.time(), self._next_send, self._paused_until)
            delay = start - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_send = max(loop.time(), start) + self.interval

    def throttled(self) -> float:
        """Note an ESME_RTHROTTLED: pause every sender; return the pause."""
        delay = self._throttle.next_delay()
        self._paused_until = max(self._paused_until, asyncio.get_running_loop().time() + delay)
        return delay

    def accepted(self) -> None:
        """Note an accepted submit_sm: the next throttle pause starts small again."""
        self._throttle.reset()


class _Refused(Exception):
    """A part was refused for good; the text says why."""


class SmppTransport(TransportActor):
    """SMPP 3.4 ESME transport (see the module docstring)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = SmppTransportConfig
    TRANSPORT_TYPE: ClassVar[str] = "sms"

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        cfg = self.config
        self._password = ""
        self._transmitter: ConnectionSupervisor[_Session] | None = None
        self._receiver: ConnectionSupervisor[_Session] | None = None
        self._window = SendWindow(cfg.window_size)
        self._pacer = _SendPacer(cfg.tps, cfg.throttle_delay, cfg.throttle_max_delay)
        self._references = itertools.cycle(range(1, 256 if cfg.long_messages == "udh" else 65536))
        self._sent_ids: BoundedMap[str, str] = BoundedMap(cfg.remember_sent)
        self._long: BoundedMap[str, _LongMessage] = BoundedMap(cfg.remember_sent)
        self._early_receipts: BoundedMap[str, tuple[Receipt, float]] = BoundedMap(1000)
        self._inbound_parts: dict[tuple[str, str, int, int], _InboundParts] = {}
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------

    async def setup_transport(self) -> None:
        """Read the password and start binding (waits up to ``backoff.connect_timeout`` for the binds).

        Raises:
            ConfigError: the password cannot be read.
        """
        cfg = self.config
        self._password = cfg.password.reveal("password") if cfg.password else ""
        if len(self._password.encode()) > MAX_PASSWORD_OCTETS:
            raise ConfigError(
                f"password: the SMPP bind password is at most {MAX_PASSWORD_OCTETS} octets "
                f"(the secret in {cfg.password.env or cfg.password.file!r} is longer)"
            )
        self._closing = False
        name = f"smpp transport {self.endpoint_name!r} ({cfg.system_id}@{cfg.host}:{cfg.port})"
        if cfg.bind_mode == "transceiver":
            self._transmitter = self._receiver = self._supervisor(f"{name} TRX", "TRX")
            binds = [self._transmitter]
        else:
            self._transmitter = self._supervisor(f"{name} TX", "TX")
            self._receiver = self._supervisor(f"{name} RX", "RX")
            binds = [self._transmitter, self._receiver]
        await asyncio.gather(*(bind.start_and_wait() for bind in binds))

    def _supervisor(self, name: str, bind_type: str) -> ConnectionSupervisor[_Session]:
        async def connect() -> _Session:
            return await self._bind(bind_type)

        return ConnectionSupervisor(name, connect, self._read_session, self._unbind, self.config.backoff)

    async def teardown_transport(self) -> None:
        """Unbind, and nack what could not be sent (waits a few seconds for outstanding submits)."""
        self._closing = True
        for bind in {id(b): b for b in (self._transmitter, self._receiver) if b is not None}.values():
            await bind.stop()
        await self._window.close()

    def is_bound(self) -> bool:
        """Whether every bind is up."""
        binds = [b for b in (self._transmitter, self._receiver) if b is not None]
        return bool(binds) and all(b.connected for b in binds)

    async def wait_bound(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every bind to be up; return whether they are."""
        binds = {id(b): b for b in (self._transmitter, self._receiver) if b is not None}.values()
        results = await asyncio.gather(*(b.wait_connected(timeout) for b in binds))
        return bool(results) and all(results)

    async def _bind(self, bind_type: str) -> _Session:
        import smpp34

        cfg = self.config
        client = smpp34.Client(
            host=cfg.host,
            port=cfg.port,
            system_id=cfg.system_id,
            password=self._password,
            bind_type=bind_type,
            system_type=cfg.system_type,
            addr_ton=cfg.addr_ton,
            addr_npi=cfg.addr_npi,
            address_range=cfg.address_range,
            window_size=cfg.window_size,
            connect_timeout_ms=max(1, int(cfg.backoff.connect_timeout * 1000) - 100),
        )
        try:
            smsc = await client.connect()
        except BaseException:
            await client.stop()
            raise
        return _Session(client, smsc)

    async def _unbind(self, session: _Session) -> None:
        try:
            await asyncio.wait_for(session.smsc.unbind(), 2.0)
        except Exception as exc:
            log.debug("smpp transport %r: unbind failed: %s", self.endpoint_name, exc)
        await session.client.stop()

    # -- inbound ----------------------------------------------------------------------

    async def _read_session(self, session: _Session) -> None:
        import smpp34

        while True:
            event = await session.smsc.next()
            if isinstance(event, smpp34.DeliverSmEvent):
                try:
                    await self._on_deliver_sm(event)
                except Exception as exc:  # one bad PDU never stops the others
                    self.counters["inbound_errors"] += 1
                    log.warning("smpp transport %r: deliver_sm not handled: %s", self.endpoint_name, exc)
            else:
                return

    async def _on_deliver_sm(self, event: Any) -> None:
        tlvs = {t.tag: t.value for t in event.tlvs}
        payload = event.short_message or tlvs.get(TLV_MESSAGE_PAYLOAD, b"")
        esm_class = event.esm_class
        if esm_class & ESM_CLASS_RECEIPT_MASK in (ESM_CLASS_DELIVERY_RECEIPT, ESM_CLASS_INTERMEDIATE_NOTIFICATION):
            receipt = parse_receipt(payload.decode("latin-1"), tlvs)
            if receipt is None:
                self.counters["receipts_unreadable"] += 1
                log.warning("smpp transport %r: unreadable delivery receipt %r", self.endpoint_name, payload[:160])
                return
            await self._on_receipt(receipt)
            return
        concat = None
        if esm_class & ESM_CLASS_UDHI:
            concat, payload = split_udh(payload)
        elif TLV_SAR_MSG_REF_NUM in tlvs:
            concat = Concatenation(
                int.from_bytes(tlvs[TLV_SAR_MSG_REF_NUM], "big"),
                tlvs.get(TLV_SAR_TOTAL_SEGMENTS, b"\x01")[0],
                tlvs.get(TLV_SAR_SEGMENT_SEQNUM, b"\x01")[0],
            )
        text = decode_text(event.data_coding, payload, self.config.default_alphabet)
        if concat is not None and concat.total > 1:
            whole = self._collect_part(event.source_addr, event.destination_addr, concat, text)
            if whole is None:
                return
            text = whole
        metadata = {
            "smpp": {
                "source_addr_ton": event.source_addr_ton,
                "source_addr_npi": event.source_addr_npi,
                "dest_addr_ton": event.dest_addr_ton,
                "dest_addr_npi": event.dest_addr_npi,
                "data_coding": event.data_coding,
                "esm_class": esm_class,
                "service_type": event.service_type,
            }
        }
        await self.publish_from_peer(
            from_addr=event.source_addr,
            to_addr=event.destination_addr,
            content=text,
            transport_type=self.config.transport_type,
            transport_metadata=metadata,
        )

    def _collect_part(self, source: str, destination: str, concat: Concatenation, text: str) -> str | None:
        now = time.monotonic()
        for key in [k for k, v in self._inbound_parts.items() if now - v.first_seen > self.config.inbound_part_timeout]:
            del self._inbound_parts[key]
            self.counters["inbound_parts_expired"] += 1
        key = (source, destination, concat.reference, concat.total)
        parts = self._inbound_parts.setdefault(key, _InboundParts(concat.total, now))
        parts.texts[concat.number] = text
        if len(parts.texts) < parts.total:
            if len(self._inbound_parts) > 10_000:
                oldest = min(self._inbound_parts, key=lambda k: self._inbound_parts[k].first_seen)
                del self._inbound_parts[oldest]
            return None
        del self._inbound_parts[key]
        return "".join(parts.texts[n] for n in sorted(parts.texts))

    async def _on_receipt(self, receipt: Receipt) -> None:
        user_message_id, smsc_id = self._lookup_sent(receipt.message_id)
        if user_message_id is None or smsc_id is None:
            self._early_receipts[receipt.message_id] = (receipt, time.monotonic())
            self.counters["receipts_unmatched"] += 1
            return
        status = receipt.delivery_status
        long = self._long.get(user_message_id)
        if long is not None:
            if status == "delivered":
                long.delivered.add(smsc_id)
                if len(long.delivered) < long.total:
                    return
                self._long.pop(user_message_id)
            elif status == "pending":
                if long.reported_pending:
                    return
                long.reported_pending = True
            else:
                self._long.pop(user_message_id)
        self.counters[f"receipts_{status}"] += 1
        await self.publish_delivery_report(
            user_message_id,
            status,
            transport_metadata={"smpp": {"smsc_message_id": smsc_id, "state": receipt.state}},
        )

    def _lookup_sent(self, receipt_id: str) -> tuple[str | None, str | None]:
        for variant in id_variants(receipt_id):
            user_message_id = self._sent_ids.get(variant)
            if user_message_id is not None:
                return user_message_id, variant
        return None, None

    async def _remember_sent(self, smsc_id: str, user_message_id: str) -> None:
        self._sent_ids[smsc_id] = user_message_id
        for variant in id_variants(smsc_id):
            early = self._early_receipts.pop(variant)
            if early is not None:
                self.counters["receipts_unmatched"] -= 1
                await self._on_receipt(early[0])

    # -- outbound ---------------------------------------------------------------------

    async def handle_outbound_message(self, message: TransportUserMessage) -> None:
        """Encode, split and submit ``message`` (see the module docstring); returns once its parts are sent.

        The ack or nack follows when the SMSC has answered every part.
        """
        cfg = self.config
        for key, address in (("to_addr", message.to_addr or ""), ("from_addr", message.from_addr or cfg.source_addr)):
            if not address.isascii() or len(address) > MAX_ADDRESS_OCTETS:
                await self._nack(message, f"{key} {address!r} is not an SMPP address (ASCII, at most 20 characters)")
                return
        if not message.to_addr:
            await self._nack(message, "SMS messages need a to_addr")
            return
        try:
            encoded = encode_message(
                message.content or "", cfg.coding, cfg.long_messages, next(self._references), cfg.max_parts
            )
        except EncodingError as exc:
            await self._nack(message, f"cannot encode the message: {exc}")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.outbound_timeout
        if len(encoded.parts) > 1:
            self._long[message.message_id] = _LongMessage(len(encoded.parts))
        parts: list[asyncio.Task[str]] = []
        for index in range(len(encoded.parts)):
            if not await self._window.reserve(deadline - loop.time()):
                for task in parts:
                    task.cancel()
                await self._nack(message, f"no room in the submit window within {cfg.outbound_timeout}s")
                return
            parts.append(await self._window.start(self._submit_part(message, encoded, index, deadline)))
        self._window.track(loop.create_task(self._conclude(message, parts)))

    async def _conclude(self, message: TransportUserMessage, parts: list[asyncio.Task[str]]) -> None:
        results = await asyncio.gather(*parts, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            self._long.pop(message.message_id)
            first = failures[0]
            reason = str(first) if isinstance(first, _Refused) else f"{type(first).__name__}: {first}"
            await self._nack(message, reason)
            return
        ids = [str(r) for r in results]
        if not ids[0]:
            ids[0] = message.message_id  # the SMSC gave no id: there will be no receipts to match
        self.counters["outbound_acked"] += 1
        await self.publish_ack(
            message.message_id, sent_message_id=ids[0], transport_metadata={"smpp": {"smsc_message_ids": ids}}
        )

    async def _nack(self, message: TransportUserMessage, reason: str) -> None:
        self.counters["outbound_nacked"] += 1
        await self.publish_nack(message.message_id, reason)

    async def _submit_part(
        self, message: TransportUserMessage, encoded: EncodedMessage, index: int, deadline: float
    ) -> str:
        """Submit one part until the SMSC accepts or refuses it, or the deadline passes; return its id."""
        import smpp34

        cfg = self.config
        part = encoded.parts[index]
        loop = asyncio.get_running_loop()
        last = "the bind never came up"
        while not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            assert self._transmitter is not None
            if not await self._transmitter.wait_connected(remaining):
                break
            session = self._transmitter.connection
            if session is None:
                continue
            await self._pacer.wait_turn()
            try:
                response = await asyncio.wait_for(
                    session.smsc.submit_sm(
                        message.to_addr or "",
                        part.short_message,
                        source_addr=message.from_addr or cfg.source_addr,
                        service_type=cfg.service_type,
                        source_addr_ton=cfg.source_addr_ton,
                        source_addr_npi=cfg.source_addr_npi,
                        dest_addr_ton=cfg.dest_addr_ton,
                        dest_addr_npi=cfg.dest_addr_npi,
                        esm_class=part.esm_class,
                        registered_delivery=1 if cfg.registered_delivery else 0,
                        data_coding=encoded.data_coding,
                        tlvs=[smpp34.Tlv(tag, value) for tag, value in part.tlvs],
                    ),
                    min(cfg.request_timeout, max(0.001, deadline - loop.time())),
                )
            except (smpp34.SmppError, TimeoutError, RuntimeError) as exc:
                last = f"submit_sm failed: {exc}"
                self.counters["submit_retries"] += 1
                if not await _alive(session):
                    self._transmitter.connection_lost()
                await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
                continue
            status = int(response.command_status)
            if status == ESME_ROK:
                self._pacer.accepted()
                smsc_id = str(response.message_id or "")
                if smsc_id:
                    await self._remember_sent(smsc_id, message.message_id)
                return smsc_id
            if status == ESME_RTHROTTLED:
                pause = self._pacer.throttled()
                self.counters["throttled"] += 1
                last = f"SMSC kept throttling ({describe_status(status)})"
                log.info("smpp transport %r: throttled, pausing %.2fs", self.endpoint_name, pause)
                continue
            raise _Refused(f"submit_sm refused: {describe_status(status)} (part {index + 1} of {len(encoded.parts)})")
        if self._closing:
            raise _Refused("transport stopped before the SMSC accepted the message")
        raise _Refused(f"not accepted within {cfg.outbound_timeout}s: {last}")


async def _alive(session: _Session) -> bool:
    try:
        return bool(await asyncio.wait_for(session.client.is_alive(), 1.0))
    except Exception:
        return False
