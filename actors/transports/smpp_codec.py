"""SMPP text handling without I/O: GSM 03.38 / UCS-2 coding, long-message splitting, receipts.

GSM 03.38 text travels unpacked (one septet per octet, ``data_coding`` 0), as
SMPP peers expect; characters of the extension table take two septets and are
never split across parts. UCS-2 is UTF-16-BE (``data_coding`` 8); a surrogate
pair is never split. Long messages are split with a concatenation UDH
(``esm_class`` 0x40) or with SAR TLVs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

# The GSM 03.38 default alphabet, by septet value (0x1B is the escape to the extension table).
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_GSM_ENCODE = {char: code for code, char in enumerate(GSM_BASIC) if code != 0x1B}
_GSM_EXT_DECODE = {code: char for char, code in GSM_EXTENDED.items()}

DATA_CODING_DEFAULT = 0x00
DATA_CODING_IA5 = 0x01
DATA_CODING_BINARY = 0x04
DATA_CODING_LATIN1 = 0x03
DATA_CODING_UCS2 = 0x08
ESM_CLASS_UDHI = 0x40
ESM_CLASS_RECEIPT_MASK = 0x3C
ESM_CLASS_DELIVERY_RECEIPT = 0x04
ESM_CLASS_INTERMEDIATE_NOTIFICATION = 0x20

TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_MESSAGE_PAYLOAD = 0x0424

Coding = Literal["auto", "gsm0338", "ucs2", "latin1"]
SplitMode = Literal["udh", "sar"]


class EncodingError(ValueError):
    """The text cannot be sent with the chosen coding, or needs more parts than allowed."""


def gsm_septets(text: str) -> list[bytes] | None:
    """Return each character's septets (1 or 2 bytes), or None if ``text`` is not GSM 03.38."""
    out: list[bytes] = []
    for char in text:
        if char in _GSM_ENCODE:
            out.append(bytes((_GSM_ENCODE[char],)))
        elif char in GSM_EXTENDED:
            out.append(bytes((0x1B, GSM_EXTENDED[char])))
        else:
            return None
    return out


def gsm_decode(data: bytes) -> str:
    """Decode unpacked GSM 03.38 septets (unknown escapes become spaces, as the standard says)."""
    out: list[str] = []
    escape = False
    for byte in data:
        septet = byte & 0x7F
        if escape:
            out.append(_GSM_EXT_DECODE.get(septet, " "))
            escape = False
        elif septet == 0x1B:
            escape = True
        else:
            out.append(GSM_BASIC[septet])
    return "".join(out)


@dataclass
class Part:
    """One submit_sm's worth of a message."""

    short_message: bytes
    esm_class: int = 0
    tlvs: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class EncodedMessage:
    """A message ready to submit: its ``data_coding`` and parts."""

    data_coding: int
    parts: list[Part]


def _units(text: str, coding: Coding) -> tuple[int, list[bytes]]:
    """Return the data_coding and the text as indivisible byte units (characters)."""
    if coding in ("auto", "gsm0338"):
        septets = gsm_septets(text)
        if septets is not None:
            return DATA_CODING_DEFAULT, septets
        if coding == "gsm0338":
            bad = next(c for c in text if gsm_septets(c) is None)
            raise EncodingError(f"character {bad!r} is not in the GSM 03.38 alphabet")
    if coding == "latin1":
        try:
            return DATA_CODING_LATIN1, [c.encode("latin-1") for c in text]
        except UnicodeEncodeError as exc:
            raise EncodingError(f"text is not Latin-1 ({exc.reason} at {exc.start})") from None
    return DATA_CODING_UCS2, [c.encode("utf-16-be") for c in text]


def _chunks(units: list[bytes], limit: int) -> list[bytes]:
    chunks: list[bytes] = []
    current = b""
    for unit in units:
        if len(current) + len(unit) > limit:
            chunks.append(current)
            current = b""
        current += unit
    chunks.append(current)
    return chunks


def encode_message(
    text: str, coding: Coding = "auto", split: SplitMode = "udh", reference: int = 0, max_parts: int = 10
) -> EncodedMessage:
    """Encode ``text`` and split it into parts if it does not fit one ``submit_sm``.

    Single messages hold 160 GSM septets or 140 octets; parts of a long
    message hold 153 septets / 134 octets with a UDH (8-bit reference), and
    the same with SAR TLVs (16-bit reference).

    Raises:
        EncodingError: the text does not fit ``coding``, or needs more than ``max_parts`` parts.
    """
    data_coding, units = _units(text, coding)
    single, multi = (160, 153) if data_coding == DATA_CODING_DEFAULT else (140, 134)
    if sum(len(u) for u in units) <= single:
        return EncodedMessage(data_coding, [Part(b"".join(units))])
    chunks = _chunks(units, multi)
    if len(chunks) > max_parts:
        raise EncodingError(f"text needs {len(chunks)} parts, more than max_parts={max_parts}")
    total = len(chunks)
    parts = []
    for number, chunk in enumerate(chunks, start=1):
        if split == "udh":
            udh = bytes((0x05, 0x00, 0x03, reference & 0xFF, total, number))
            parts.append(Part(udh + chunk, ESM_CLASS_UDHI))
        else:
            tlvs = [
                (TLV_SAR_MSG_REF_NUM, (reference & 0xFFFF).to_bytes(2, "big")),
                (TLV_SAR_TOTAL_SEGMENTS, bytes((total,))),
                (TLV_SAR_SEGMENT_SEQNUM, bytes((number,))),
            ]
            parts.append(Part(chunk, 0, tlvs))
    return EncodedMessage(data_coding, parts)


@dataclass
class Concatenation:
    """Where an inbound part belongs: its reference, the number of parts, and its number."""

    reference: int
    total: int
    number: int


def split_udh(payload: bytes) -> tuple[Concatenation | None, bytes]:
    """Strip a UDH from ``payload``; return its concatenation info (if any) and the rest.

    Raises:
        ValueError: the UDH length exceeds the payload.
    """
    if not payload:
        raise ValueError("UDHI set but short_message is empty")
    length = payload[0]
    if length + 1 > len(payload):
        raise ValueError(f"UDH length {length} exceeds the {len(payload)}-byte payload")
    header, rest = payload[1 : length + 1], payload[length + 1 :]
    concat = None
    index = 0
    while index + 2 <= len(header):
        iei, size = header[index], header[index + 1]
        value = header[index + 2 : index + 2 + size]
        if iei == 0x00 and size == 3:
            concat = Concatenation(value[0], value[1], value[2])
        elif iei == 0x08 and size == 4:
            concat = Concatenation(int.from_bytes(value[:2], "big"), value[2], value[3])
        index += 2 + size
    return concat, rest


def decode_text(data_coding: int, payload: bytes, default_alphabet: Literal["gsm0338", "latin1", "ascii"]) -> str:
    """Decode a short message's bytes by ``data_coding`` (0 uses ``default_alphabet``).

    Binary codings come back as lowercase hex.
    """
    coding = data_coding
    if data_coding & 0xF0 == 0xF0:  # the "message class" coding group: bit 2 says 8-bit data
        coding = DATA_CODING_BINARY if data_coding & 0x04 else DATA_CODING_DEFAULT
    if coding == DATA_CODING_DEFAULT:
        if default_alphabet == "gsm0338":
            return gsm_decode(payload)
        return payload.decode(default_alphabet, errors="replace")
    if coding == DATA_CODING_IA5:
        return payload.decode("ascii", errors="replace")
    if coding == DATA_CODING_LATIN1:
        return payload.decode("latin-1")
    if coding == DATA_CODING_UCS2:
        return payload.decode("utf-16-be", errors="replace")
    if coding in (0x02, DATA_CODING_BINARY):
        return payload.hex()
    return payload.decode("latin-1")


_RECEIPT = re.compile(r"\bid:\s*(?P<id>\S+).*?\bstat:\s*(?P<stat>\w+)", re.IGNORECASE | re.DOTALL)
_MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
RECEIPT_STATUS = {
    "DELIVRD": "delivered",
    "DELIVERED": "delivered",
    "ENROUTE": "pending",
    "ACCEPTD": "pending",
    "ACCEPTED": "pending",
    "BUFFERED": "pending",
    "EXPIRED": "failed",
    "DELETED": "failed",
    "UNDELIV": "failed",
    "UNDELIVERABLE": "failed",
    "REJECTD": "failed",
    "REJECTED": "failed",
    "UNKNOWN": "failed",
}


@dataclass
class Receipt:
    """A delivery receipt: the SMSC's message id and its state word (``DELIVRD``, ...)."""

    message_id: str
    state: str

    @property
    def delivery_status(self) -> str:
        """The Vumi ``delivery_status``: ``delivered``, ``pending`` or ``failed``."""
        return RECEIPT_STATUS.get(self.state.upper(), "failed")


def parse_receipt(text: str, tlvs: dict[int, bytes]) -> Receipt | None:
    """Read a receipt from the ``receipted_message_id`` / ``message_state`` TLVs, else the text.

    Returns None when neither gives a message id.
    """
    message_id = tlvs.get(TLV_RECEIPTED_MESSAGE_ID, b"").rstrip(b"\x00").decode("ascii", errors="replace")
    state_tlv = tlvs.get(TLV_MESSAGE_STATE)
    match = _RECEIPT.search(text)
    state = _MESSAGE_STATES.get(state_tlv[0], "UNKNOWN") if state_tlv else (match["stat"] if match else "")
    if not message_id and match:
        message_id = match["id"]
    if not message_id or not state:
        return None
    return Receipt(message_id, state)


def id_variants(smsc_id: str) -> list[str]:
    """Spellings of an SMSC message id that receipts use: as given, hex<->decimal, case."""
    variants = [smsc_id, smsc_id.lower(), smsc_id.upper()]
    if smsc_id.isdigit():
        variants += [format(int(smsc_id), "x"), format(int(smsc_id), "X")]
    elif re.fullmatch(r"[0-9A-Fa-f]+", smsc_id):
        variants.append(str(int(smsc_id, 16)))
    return list(dict.fromkeys(variants))
