"""SMPP 3.4 PDUs without I/O: the header, the bind, submit_sm and deliver_sm bodies, status names.

Only what an ESME needs: bind_transmitter / bind_receiver / bind_transceiver
(and their responses), unbind, enquire_link, submit_sm / submit_sm_resp,
deliver_sm / deliver_sm_resp and generic_nack. Pure ``struct`` code, so the
session (``smpp_session``) decides when each PDU goes out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

HEADER = struct.Struct(">IIII")
MAX_PDU_OCTETS = 64 * 1024
INTERFACE_VERSION = 0x34

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
RESPONSE_BIT = 0x80000000
BIND_COMMANDS = {"RX": BIND_RECEIVER, "TX": BIND_TRANSMITTER, "TRX": BIND_TRANSCEIVER}
COMMAND_NAMES = {
    GENERIC_NACK: "generic_nack",
    BIND_RECEIVER: "bind_receiver",
    BIND_TRANSMITTER: "bind_transmitter",
    SUBMIT_SM: "submit_sm",
    DELIVER_SM: "deliver_sm",
    UNBIND: "unbind",
    BIND_TRANSCEIVER: "bind_transceiver",
    ENQUIRE_LINK: "enquire_link",
}

ESME_ROK = 0x00
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RSYSERR = 0x08
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RINVSYSTYP = 0x53
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64
ESME_RX_P_APPN = 0x65
COMMAND_STATUS_NAMES = {
    0x00: "ESME_ROK",
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x05: "ESME_RALYBND",
    0x06: "ESME_RINVPRTFLG",
    0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD",
    0x0F: "ESME_RINVSYSID",
    0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL",
    0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x53: "ESME_RINVSYSTYP",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0x66: "ESME_RX_R_APPN",
    0xFF: "ESME_RUNKNOWNERR",
}
PERMANENT_BIND_REFUSALS = frozenset({ESME_RINVPASWD, ESME_RINVSYSID, ESME_RINVSYSTYP})
"""Bind refusals that retrying with the same config cannot fix (wrong credentials or system_type)."""


def describe_status(status: int) -> str:
    """Name an SMPP command_status: ``ESME_RINVDSTADR (0x0000000B)``."""
    return f"{COMMAND_STATUS_NAMES.get(status, 'status')} (0x{status:08X})"


class PduError(ValueError):
    """Bytes that are not a valid SMPP PDU (the text says which field)."""


@dataclass
class Pdu:
    """One PDU: header fields and the undecoded body."""

    command_id: int
    command_status: int
    sequence_number: int
    body: bytes = b""

    @property
    def is_response(self) -> bool:
        """Whether this is a ``*_resp`` (or generic_nack)."""
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def name(self) -> str:
        """The command's name (``submit_sm_resp``, ...)."""
        base = COMMAND_NAMES.get(self.command_id & ~RESPONSE_BIT, f"command 0x{self.command_id:08X}")
        return base if self.command_id == GENERIC_NACK or not self.is_response else f"{base}_resp"

    def encode(self) -> bytes:
        """The PDU on the wire."""
        return HEADER.pack(HEADER.size + len(self.body), self.command_id, self.command_status, self.sequence_number) + (
            self.body
        )


def parse_header(header: bytes) -> tuple[int, int, int, int]:
    """Return ``(command_length, command_id, command_status, sequence_number)`` of a 16-octet header.

    Raises:
        PduError: the length is below 16 or above ``MAX_PDU_OCTETS``.
    """
    length, command_id, status, sequence = HEADER.unpack(header)
    if not HEADER.size <= length <= MAX_PDU_OCTETS:
        raise PduError(f"command_length {length} is outside {HEADER.size}..{MAX_PDU_OCTETS}")
    return length, command_id, status, sequence


def c_string(value: str, max_octets: int, name: str) -> bytes:
    """Encode a C-Octet String (ASCII, NUL-terminated).

    Raises:
        PduError: ``value`` is not ASCII or longer than ``max_octets - 1``.
    """
    data = value.encode("ascii", errors="strict") if value.isascii() else None
    if data is None or len(data) >= max_octets:
        raise PduError(f"{name} {value!r:.60} is not ASCII of at most {max_octets - 1} characters")
    return data + b"\x00"


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def c_string(self, name: str) -> str:
        end = self.data.find(b"\x00", self.at)
        if end < 0:
            raise PduError(f"{name} is not NUL-terminated")
        value = self.data[self.at : end].decode("latin-1")
        self.at = end + 1
        return value

    def octet(self, name: str) -> int:
        if self.at >= len(self.data):
            raise PduError(f"the body ends before {name}")
        self.at += 1
        return self.data[self.at - 1]

    def octets(self, count: int, name: str) -> bytes:
        if self.at + count > len(self.data):
            raise PduError(f"the body ends inside {name}")
        self.at += count
        return self.data[self.at - count : self.at]

    def tlvs(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        while self.at < len(self.data):
            tag, length = struct.unpack(">HH", self.octets(4, "a TLV header"))
            found[tag] = self.octets(length, f"TLV 0x{tag:04X}")
        return found


@dataclass
class BindRequest:
    """What a bind says about the ESME (SMPP 3.4 section 4.1)."""

    system_id: str
    password: str = ""
    system_type: str = ""
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def encode(self, bind_type: str) -> tuple[int, bytes]:
        """Return the command_id and body of the bind (``bind_type``: ``TX``, ``RX`` or ``TRX``).

        Raises:
            PduError: a field does not fit.
        """
        body = (
            c_string(self.system_id, 16, "system_id")
            + c_string(self.password, 9, "password")
            + c_string(self.system_type, 13, "system_type")
            + bytes((INTERFACE_VERSION, self.addr_ton, self.addr_npi))
            + c_string(self.address_range, 41, "address_range")
        )
        return BIND_COMMANDS[bind_type], body


@dataclass
class ShortMessage:
    """The body of a submit_sm or deliver_sm (same layout in SMPP 3.4)."""

    source_addr: str = ""
    destination_addr: str = ""
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The body on the wire.

        Raises:
            PduError: a field does not fit (addresses are at most 20 ASCII characters,
                short_message at most 254 octets: longer text goes in ``message_payload``).
        """
        if len(self.short_message) > 254:
            raise PduError(f"short_message is {len(self.short_message)} octets, more than 254")
        body = (
            c_string(self.service_type, 6, "service_type")
            + bytes((self.source_addr_ton, self.source_addr_npi))
            + c_string(self.source_addr, 21, "source_addr")
            + bytes((self.dest_addr_ton, self.dest_addr_npi))
            + c_string(self.destination_addr, 21, "destination_addr")
            + bytes((self.esm_class, self.protocol_id, self.priority_flag))
            + c_string(self.schedule_delivery_time, 17, "schedule_delivery_time")
            + c_string(self.validity_period, 17, "validity_period")
            + bytes((self.registered_delivery, self.replace_if_present_flag, self.data_coding))
            + bytes((self.sm_default_msg_id, len(self.short_message)))
            + self.short_message
        )
        for tag, value in self.tlvs.items():
            body += struct.pack(">HH", tag, len(value)) + value
        return body

    @classmethod
    def decode(cls, body: bytes) -> ShortMessage:
        """Read a submit_sm or deliver_sm body.

        Raises:
            PduError: the body is truncated or malformed (the text names the field).
        """
        read = _Reader(body)
        message = cls(service_type=read.c_string("service_type"))
        message.source_addr_ton = read.octet("source_addr_ton")
        message.source_addr_npi = read.octet("source_addr_npi")
        message.source_addr = read.c_string("source_addr")
        message.dest_addr_ton = read.octet("dest_addr_ton")
        message.dest_addr_npi = read.octet("dest_addr_npi")
        message.destination_addr = read.c_string("destination_addr")
        message.esm_class = read.octet("esm_class")
        message.protocol_id = read.octet("protocol_id")
        message.priority_flag = read.octet("priority_flag")
        message.schedule_delivery_time = read.c_string("schedule_delivery_time")
        message.validity_period = read.c_string("validity_period")
        message.registered_delivery = read.octet("registered_delivery")
        message.replace_if_present_flag = read.octet("replace_if_present_flag")
        message.data_coding = read.octet("data_coding")
        message.sm_default_msg_id = read.octet("sm_default_msg_id")
        message.short_message = read.octets(read.octet("sm_length"), "short_message")
        message.tlvs = read.tlvs()
        return message


def decode_message_id(body: bytes) -> str:
    """The message_id of a submit_sm_resp body (empty when the SMSC sent none)."""
    return body.split(b"\x00", 1)[0].decode("latin-1") if body else ""
