"""SMPP 3.4 ESME transport (on its own asyncio session, ``smpp_session``, and PDU codec, ``smpp_pdu``).

Binds as a transceiver, or as a transmitter plus a receiver (``bind_mode``),
and keeps each bind up: a lost bind is retried with backoff while the
transport runs. An enquire_link goes out every ``enquire_link_interval``
seconds; a session that does not answer within ``enquire_link_timeout`` is
dropped and bound again, whatever the socket says. A refused bind is reported
with the SMSC's own command_status (``connection_state()``, the logs, and the
nack of every message that could not go); a refusal retrying cannot fix
(``ESME_RINVPASWD``, ``ESME_RINVSYSID``, ``ESME_RINVSYSTYP``) nacks waiting
messages at once instead of letting them wait for ``outbound_timeout``.

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

Inbound: a deliver_sm is answered only once it is safe: its deliver_sm_resp
goes out after the dispatcher confirmed the message (or the delivery report
made of a receipt). When that does not happen within ``inbound_timeout``, or
the dispatcher cannot be reached, the answer is ``ESME_RX_T_APPN`` and the
SMSC delivers it again later; beyond ``inbound_window`` deliver_sm awaiting
confirmation, the answer is ``ESME_RTHROTTLED``. A transport that dies before
answering leaves the message with the SMSC. A deliver_sm is a user message (long ones reassembled from their UDH
or SAR parts), unless it is a delivery receipt (``esm_class`` 0x04 or 0x20):
then its ``receipted_message_id`` / ``message_state`` TLVs, or else the
receipt text (``id:... stat:...``), become a delivery report about the message
the SMSC gave that id (for long messages: delivered once every part is,
failed as soon as one part fails).

A part whose bind broke after the SMSC took it but before the answer arrived
is sent again after the rebind: delivery is at least once. With
``receipt_timeout``, a message acked while a final receipt was asked for
(``registered_delivery`` bit 0) that gets none by then is reported as a
``pending`` delivery report whose ``transport_metadata.smpp.state`` is
``NO_RECEIPT``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from actors.connection import ConnectionState
from actors.endpoint import EndpointConfig, TransportActor
from actors.transports.common import BackoffConfig, BoundedMap, ConnectionSupervisor, Secret, SendWindow
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
from actors.transports.smpp_pacing import SendPacer
from actors.transports.smpp_pdu import (
    COMMAND_STATUS_NAMES,
    ESME_ROK,
    ESME_RTHROTTLED,
    ESME_RX_P_APPN,
    ESME_RX_T_APPN,
    PERMANENT_BIND_REFUSALS,
    SUBMIT_SM,
    BindRequest,
    Pdu,
    PduError,
    ShortMessage,
    decode_message_id,
    describe_status,
)
from actors.transports.smpp_session import BindRefused, SessionLost, SmppSession
from ray_dispatch.core.errors import ConfigError, DeliveryError, InvalidMessage
from ray_dispatch.core.message import TransportUserMessage

__all__ = ["COMMAND_STATUS_NAMES", "SmppTransport", "SmppTransportConfig", "describe_status"]

log = logging.getLogger(__name__)

MAX_PASSWORD_OCTETS = 8
MAX_ADDRESS_OCTETS = 20
RECEIPT_REQUESTED = 0x01
"""``registered_delivery`` bits 0-1 = 1: a final receipt on success and failure."""


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
        registered_delivery: the submit_sm's ``registered_delivery`` (default 1: a receipt on success
            or failure; 2: on failure only; 0: none; 0x10 adds intermediate notifications).
            ``true`` / ``false`` mean 1 / 0.
        receipt_timeout: seconds after the ack when a message that asked for a final receipt
            (``registered_delivery`` bits 0-1 = 1) and got none is reported ``pending`` with state
            ``NO_RECEIPT`` (default 86400; none: never).
        window_size: most submit_sm awaiting their response at once (default 10).
        tps: most submit_sm per second on the transmitting bind (default none: unlimited).
        throttle_delay: first pause after ESME_RTHROTTLED, in seconds; doubles per repeat (default 1).
        throttle_max_delay: longest pause after ESME_RTHROTTLED (default 30).
        outbound_timeout: seconds a message may take to be accepted, waiting for a bind included (default 60).
        request_timeout: seconds to wait for one submit_sm_resp before sending the part again (default 30).
        enquire_link_interval: seconds between enquire_link keep-alives (default 30).
        enquire_link_timeout: a session that does not answer one within this many seconds is
            dropped and bound again (default 10).
        inbound_window: most deliver_sm awaiting the dispatcher's confirmation at once; more get
            ``ESME_RTHROTTLED`` (default 100).
        inbound_timeout: seconds a deliver_sm may wait for the dispatcher's confirmation before it is
            answered ``ESME_RX_T_APPN`` so the SMSC delivers it again (default 10).
        transport_type: the ``transport_type`` of inbound messages (default ``sms``).
        remember_sent: how many SMSC message ids to remember for receipts (default 100000).
        inbound_part_timeout: seconds to keep parts of an incomplete long inbound message (default 300).
        backoff: delays between bind attempts (``connect_timeout`` bounds one attempt).
        permanent_refusal_delay: seconds before a bind refused with ``ESME_RINVPASWD``,
            ``ESME_RINVSYSID`` or ``ESME_RINVSYSTYP`` is tried again (default 300).
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
    registered_delivery: int = 1
    receipt_timeout: float | None = Field(86400.0, gt=0)
    window_size: int = Field(10, ge=1, le=1000)
    tps: float | None = Field(None, gt=0)
    throttle_delay: float = Field(1.0, gt=0)
    throttle_max_delay: float = Field(30.0, gt=0)
    outbound_timeout: float = Field(60.0, gt=0)
    request_timeout: float = Field(30.0, gt=0)
    enquire_link_interval: float = Field(30.0, gt=0)
    enquire_link_timeout: float = Field(10.0, gt=0)
    inbound_window: int = Field(100, ge=1)
    inbound_timeout: float = Field(10.0, gt=0)
    transport_type: str = "sms"
    remember_sent: int = Field(100_000, ge=1)
    inbound_part_timeout: float = Field(300.0, gt=0)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    permanent_refusal_delay: float = Field(300.0, gt=0)

    @field_validator("registered_delivery", mode="before")
    @classmethod
    def _smpp_registered_delivery(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) and not (0 <= value <= 0x1F and value & 0x03 != 0x03):
            raise ValueError(
                f"{value} is not an SMPP registered_delivery (0-31; bits 0-1: 0 none, 1 receipt, "
                "2 receipt on failure; bits 2-3 SME acks; 0x10 intermediate notifications)"
            )
        return value


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


def _refused_for_good(state: ConnectionState) -> bool:
    """Whether the SMSC refused the last bind for a reason retrying cannot fix."""
    return state.state == "refused" and state.refusal in PERMANENT_BIND_REFUSALS


def _clock(wall_time: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall_time))


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
        self._transmitter: ConnectionSupervisor[SmppSession] | None = None
        self._receiver: ConnectionSupervisor[SmppSession] | None = None
        self._window = SendWindow(cfg.window_size)
        self._pacer = SendPacer(cfg.tps, cfg.throttle_delay, cfg.throttle_max_delay)
        self._references = itertools.cycle(range(1, 256 if cfg.long_messages == "udh" else 65536))
        self._sent_ids: BoundedMap[str, str] = BoundedMap(cfg.remember_sent)
        self._long: BoundedMap[str, _LongMessage] = BoundedMap(cfg.remember_sent)
        self._early_receipts: BoundedMap[str, tuple[Receipt, float]] = BoundedMap(1000)
        self._awaiting_receipt: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._inbound_parts: dict[tuple[str, str, int, int], _InboundParts] = {}
        self._inbound: set[asyncio.Task[None]] = set()
        self._receipt_sweeper: asyncio.Task[None] | None = None
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
        if cfg.receipt_timeout is not None:
            self._receipt_sweeper = asyncio.get_running_loop().create_task(self._sweep_receipts())
        await asyncio.gather(*(bind.start_and_wait() for bind in binds))

    def _supervisor(self, name: str, bind_type: str) -> ConnectionSupervisor[SmppSession]:
        async def connect() -> SmppSession:
            return await self._bind(bind_type)

        async def serve(session: SmppSession) -> str | None:
            return await session.wait_closed()

        state = self.track_connection(bind_type)
        return ConnectionSupervisor(
            name, connect, serve, self._unbind, self.config.backoff, state=state, up_state="bound"
        )

    async def teardown_transport(self) -> None:
        """Unbind, and nack what could not be sent (waits a few seconds for outstanding submits).

        deliver_sm still awaiting the dispatcher stay unanswered: the SMSC delivers them again.
        """
        self._closing = True
        if self._receipt_sweeper is not None:
            self._receipt_sweeper.cancel()
        for bind in {id(b): b for b in (self._transmitter, self._receiver) if b is not None}.values():
            await bind.stop()
        for task in list(self._inbound):
            task.cancel()
        await asyncio.gather(*self._inbound, return_exceptions=True)
        await self._window.close()

    def is_bound(self) -> bool:
        """Whether every bind is up."""
        binds = [b for b in (self._transmitter, self._receiver) if b is not None]
        return bool(binds) and all(b.connected for b in binds)

    def connection_state(self) -> list[dict[str, Any]]:
        """Each bind's state: ``connecting``, ``bound``, ``refused`` (with the SMSC's reason) or ``down``.

        Every entry has ``connection`` (the bind: ``TRX``, ``TX`` or ``RX``), ``state``, ``reason``,
        ``since`` (wall-clock seconds), ``attempts`` (bind attempts since the last success) and
        ``next_attempt`` (see ``ConnectionState``).
        """
        return super().connection_state()

    async def wait_bound(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every bind to be up; return whether they are."""
        binds = {id(b): b for b in (self._transmitter, self._receiver) if b is not None}.values()
        results = await asyncio.gather(*(b.wait_connected(timeout) for b in binds))
        return bool(results) and all(results)

    async def _bind(self, bind_type: str) -> SmppSession:
        """Connect and bind; a refusal retrying cannot fix is not tried again for ``permanent_refusal_delay``."""
        cfg = self.config
        try:
            return await SmppSession.open(
                cfg.host,
                cfg.port,
                bind_type,
                BindRequest(
                    cfg.system_id, self._password, cfg.system_type, cfg.addr_ton, cfg.addr_npi, cfg.address_range
                ),
                on_deliver_sm=self._deliver_sm_arrived,
                enquire_link_interval=cfg.enquire_link_interval,
                enquire_link_timeout=cfg.enquire_link_timeout,
                bind_timeout=cfg.backoff.connect_timeout,
            )
        except BindRefused as exc:
            if exc.permanent:
                exc.retry_at = time.time() + cfg.permanent_refusal_delay
                log.error(
                    "smpp transport %r: %s; retrying cannot fix this: check the config (next attempt at %s)",
                    self.endpoint_name,
                    exc,
                    _clock(exc.retry_at),
                )
            raise

    async def _unbind(self, session: SmppSession) -> None:
        await session.unbind()

    # -- inbound ----------------------------------------------------------------------

    def _deliver_sm_arrived(self, session: SmppSession, pdu: Pdu) -> None:
        """Take a deliver_sm into the inbound window (answered once safe) or throttle it."""
        if len(self._inbound) >= self.config.inbound_window:
            self.counters["inbound_throttled"] += 1
            session.respond(pdu, ESME_RTHROTTLED)
            return
        task = asyncio.get_running_loop().create_task(self._answer_deliver_sm(session, pdu))
        self._inbound.add(task)
        task.add_done_callback(self._inbound.discard)

    async def _answer_deliver_sm(self, session: SmppSession, pdu: Pdu) -> None:
        try:
            message = ShortMessage.decode(pdu.body)
        except PduError as exc:
            self.counters["inbound_errors"] += 1
            log.warning("smpp transport %r: unreadable deliver_sm: %s", self.endpoint_name, exc)
            session.respond(pdu, ESME_RX_P_APPN)
            return
        handling = asyncio.ensure_future(self._on_deliver_sm(message))
        done, _ = await asyncio.wait({handling}, timeout=self.config.inbound_timeout)
        status = handling.result() if done else ESME_RX_T_APPN
        if status == ESME_RX_T_APPN:
            self.counters["inbound_deferred"] += 1  # the SMSC sends it again: at least once
        if not session.respond(pdu, status):
            self.counters["inbound_unanswered"] += 1
        if not done:
            await asyncio.wait({handling})  # it keeps its place in the inbound window until it ends

    async def _on_deliver_sm(self, message: ShortMessage) -> int:
        """Hand a deliver_sm's content to the dispatcher and wait for it; return the deliver_sm_resp status.

        ``ESME_ROK`` once it is safe; ``ESME_RX_T_APPN`` when no dispatcher took it (the SMSC tries
        again); ``ESME_RX_P_APPN`` when it cannot be read (a broken UDH: trying again cannot help).
        """
        try:
            await self._publish_deliver_sm(message)
        except (DeliveryError, RuntimeError) as exc:
            log.warning("smpp transport %r: deliver_sm not handed over: %s", self.endpoint_name, exc)
            return ESME_RX_T_APPN
        except Exception as exc:  # one bad PDU never stops the others
            self.counters["inbound_errors"] += 1
            log.warning("smpp transport %r: deliver_sm refused: %s", self.endpoint_name, exc)
            return ESME_RX_P_APPN
        return ESME_ROK

    async def _publish_deliver_sm(self, event: ShortMessage) -> None:
        tlvs = event.tlvs
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
        fields = {
            "from_addr": event.source_addr,
            "to_addr": event.destination_addr,
            "content": text,
            "transport_type": self.config.transport_type,
            "transport_metadata": {
                "smpp": {
                    "source_addr_ton": event.source_addr_ton,
                    "source_addr_npi": event.source_addr_npi,
                    "dest_addr_ton": event.dest_addr_ton,
                    "dest_addr_npi": event.dest_addr_npi,
                    "data_coding": event.data_coding,
                    "esm_class": esm_class,
                    "service_type": event.service_type,
                }
            },
        }
        try:
            await self.publish_message(wait=True, **fields)
        except InvalidMessage:
            await self.publish_from_peer(**fields)  # kept as an undeliverable record; redelivery cannot fix it

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
        if status != "pending":
            self._awaiting_receipt.pop(user_message_id, None)
        self.counters[f"receipts_{status}"] += 1
        await self.publish_event(
            wait=True,
            event_type="delivery_report",
            user_message_id=user_message_id,
            delivery_status=status,
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

    async def _sweep_receipts(self) -> None:
        """Report ``pending`` (state ``NO_RECEIPT``) for acked messages whose receipt is overdue."""
        timeout = self.config.receipt_timeout
        assert timeout is not None
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = time.monotonic()
            while self._awaiting_receipt:
                user_message_id, (due, smsc_id) = next(iter(self._awaiting_receipt.items()))
                if due > now:
                    break
                del self._awaiting_receipt[user_message_id]
                self.counters["receipts_timed_out"] += 1
                try:
                    await self.publish_delivery_report(
                        user_message_id,
                        "pending",
                        transport_metadata={
                            "smpp": {"smsc_message_id": smsc_id, "state": "NO_RECEIPT", "receipt_timeout": timeout}
                        },
                    )
                except Exception as exc:
                    log.warning("smpp transport %r: overdue receipt not reported: %s", self.endpoint_name, exc)

    def _expect_receipt(self, user_message_id: str, smsc_id: str) -> None:
        cfg = self.config
        if cfg.receipt_timeout is None or cfg.registered_delivery & 0x03 != RECEIPT_REQUESTED:
            return
        self._awaiting_receipt[user_message_id] = (time.monotonic() + cfg.receipt_timeout, smsc_id)
        while len(self._awaiting_receipt) > cfg.remember_sent:
            self._awaiting_receipt.popitem(last=False)

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
        else:
            self._expect_receipt(message.message_id, ids[0])
        self.counters["outbound_acked"] += 1
        await self.publish_ack(
            message.message_id, sent_message_id=ids[0], transport_metadata={"smpp": {"smsc_message_ids": ids}}
        )

    async def _nack(self, message: TransportUserMessage, reason: str) -> None:
        self.counters["outbound_nacked"] += 1
        await self.publish_nack(message.message_id, reason)

    async def _transmitting_session(self, deadline: float) -> SmppSession | None:
        """Wait (until ``deadline``) for the transmitting bind; None when it did not come up.

        Raises:
            _Refused: the SMSC refused the bind for a reason retrying cannot fix.
        """
        assert self._transmitter is not None
        state = self._transmitting_state()
        loop = asyncio.get_running_loop()
        while not self._closing and loop.time() < deadline:
            session = self._transmitter.connection
            if self._transmitter.connected and session is not None and session.is_open:
                return session
            if _refused_for_good(state):
                raise _Refused(f"not sent: {state.reason}")
            waits = {
                loop.create_task(self._transmitter.wait_connected(deadline - loop.time())),
                loop.create_task(state.changed.wait()),
            }
            await asyncio.wait(waits, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
        return None

    def _transmitting_state(self) -> ConnectionState:
        return self.track_connection("TRX" if self.config.bind_mode == "transceiver" else "TX")

    def _bind_trouble(self) -> str:
        state = self._transmitting_state()
        if state.reason is None:
            return "the bind never came up"
        return f"the bind is {state.state}: {state.reason}"

    async def _submit_part(
        self, message: TransportUserMessage, encoded: EncodedMessage, index: int, deadline: float
    ) -> str:
        """Submit one part until the SMSC accepts or refuses it, or the deadline passes; return its id."""
        cfg = self.config
        part = encoded.parts[index]
        body = ShortMessage(
            source_addr=message.from_addr or cfg.source_addr,
            destination_addr=message.to_addr or "",
            short_message=part.short_message,
            service_type=cfg.service_type,
            source_addr_ton=cfg.source_addr_ton,
            source_addr_npi=cfg.source_addr_npi,
            dest_addr_ton=cfg.dest_addr_ton,
            dest_addr_npi=cfg.dest_addr_npi,
            esm_class=part.esm_class,
            registered_delivery=cfg.registered_delivery,
            data_coding=encoded.data_coding,
            tlvs=dict(part.tlvs),
        ).encode()
        loop = asyncio.get_running_loop()
        last: str | None = None
        while not self._closing:
            session = await self._transmitting_session(deadline)
            if session is None:
                break
            await self._pacer.wait_turn()
            try:
                response = await session.request(
                    SUBMIT_SM, body, min(cfg.request_timeout, max(0.001, deadline - loop.time()))
                )
            except (SessionLost, TimeoutError) as exc:
                last = f"submit_sm failed: {type(exc).__name__}: {exc}"
                self.counters["submit_retries"] += 1
                await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
                continue
            status = response.command_status
            if status == ESME_ROK:
                self._pacer.accepted()
                smsc_id = decode_message_id(response.body)
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
        if not self.is_bound() or last is None:
            last = self._bind_trouble()
        raise _Refused(f"not accepted within {cfg.outbound_timeout}s: {last}")
