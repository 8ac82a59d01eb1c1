"""Recorded traffic: the JSON Lines format that ``replay`` and ``diff`` read.

Each non-blank line is one JSON object, in one of two shapes:

1. A **record** that says where the message arrived::

       {"endpoint": "sms_ke", "direction": "inbound", "message": {...}}

   - ``message`` (required): the message or event in Vumi's wire format.
   - ``endpoint``: the endpoint it arrived on: a transport name for inbound
     messages and events, an exposed (application) name for outbound
     messages. Default: the message's ``transport_name`` (inbound and events
     only; an outbound record must name its endpoint).
   - ``direction``: ``inbound``, ``event`` or ``outbound``. Default: ``event``
     when ``message_type`` is ``"event"``; otherwise ``outbound`` when
     ``endpoint`` is one of the config's ``exposed_names``, else ``inbound``.

2. A **bare Vumi message or event** (any object with a ``message_type`` key,
   or without a ``message`` key): it arrived on its ``transport_name``, as an
   inbound message or an event according to ``message_type``.

Blank lines are skipped. A line that is not a JSON object, or a record with a
bad ``direction``, ``endpoint`` or ``message``, is a *bad line*: counted as a
failure with its line number, never an exception. Messages that are not valid
Vumi messages are handed to the dispatcher, which records the failure with the
field at fault, exactly as it would for live traffic.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from ray_dispatch.core.config import DispatcherConfig
from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage, clone_json
from ray_dispatch.core.stores.failures import DIRECTIONS, Direction

_fast_loads: Callable[[str | bytes], Any] | None
try:  # optional accelerator: ~3x faster decoding; without it the standard library decodes every line
    from orjson import loads as _orjson_loads

    _fast_loads = _orjson_loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None

TrafficItem = str | bytes | Mapping[str, Any] | Message
"""One item of traffic: a JSON line (text or bytes), a decoded object, or a message."""

Traffic = str | Path | Iterable[TrafficItem]
"""A JSON Lines file path, or any iterable of traffic items (a list, an open file, ...)."""

_MESSAGE_CLASSES: dict[str, type[Message]] = {
    "inbound": TransportUserMessage,
    "outbound": TransportUserMessage,
    "event": TransportEvent,
}
_VUMI_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{6})?", re.ASCII)


class BadRecord(ValueError):
    """A traffic line that is not a usable record; the text says why."""


@dataclass(slots=True)
class Arrival:
    """One message as it arrives at the dispatcher: direction, endpoint, payload.

    Attributes:
        line: 1-based line number (or position in an iterable).
        direction: ``inbound``, ``event`` or ``outbound``.
        endpoint: the endpoint it arrived on (None: its ``transport_name``).
        payload: the Vumi payload as a dict this arrival owns (safe to mutate).
    """

    line: int
    direction: Direction
    endpoint: str | None
    payload: dict[str, Any]

    @property
    def message_id(self) -> str | None:
        """The message's id (``event_id`` for events), if it has one."""
        key = "event_id" if self.direction == "event" else "message_id"
        value = self.payload.get(key)
        return value if isinstance(value, str) else None


class TrafficReader:
    """Turns traffic items into ``Arrival`` s for one dispatcher config.

    Args:
        config: the dispatcher config (its endpoint names decide a record's
            default direction).
    """

    def __init__(self, config: DispatcherConfig) -> None:
        self._exposed = frozenset(config.exposed_names)
        self.bytes_read = 0

    def arrival(self, obj: Any, line: int = 1, *, owned: bool = False) -> Arrival:
        """Interpret one decoded JSON value (record or bare message) as an arrival.

        The arrival gets its own copy of the payload unless ``owned`` says
        ``obj`` is fresh (just decoded) and may be used as it is.

        Raises:
            BadRecord: not an object, or a record with a bad field; names the field.
        """
        if type(obj) is dict and "message_type" in obj:  # the common case: a bare message just decoded
            payload = obj if owned else clone_json(obj)
            return Arrival(line, "event" if obj["message_type"] == "event" else "inbound", None, payload)
        if isinstance(obj, Message):
            payload = obj.to_dict()
            return Arrival(line, _bare_direction(payload), None, payload)
        if not isinstance(obj, Mapping):
            raise BadRecord(f"a traffic line must be a JSON object (got {_json_type(obj)})")
        if "message_type" in obj or "message" not in obj:
            payload = obj if owned and type(obj) is dict else clone_json(dict(obj))
            return Arrival(line, _bare_direction(payload), None, payload)
        message = obj["message"]
        if isinstance(message, Message):
            message = message.to_dict()
        elif isinstance(message, Mapping):
            message = message if owned and type(message) is dict else clone_json(dict(message))
        else:
            raise BadRecord(f"'message' must be a JSON object with a Vumi message (got {_json_type(message)})")
        endpoint = obj.get("endpoint")
        if endpoint is not None and not isinstance(endpoint, str):
            raise BadRecord(f"'endpoint' must be an endpoint name (got {endpoint!r})")
        direction = obj.get("direction")
        if direction is None:
            direction = _bare_direction(message)
            if direction == "inbound" and endpoint in self._exposed:
                direction = "outbound"
        elif direction not in DIRECTIONS:
            raise BadRecord(f"'direction' must be one of {', '.join(DIRECTIONS)} (got {direction!r})")
        if direction == "outbound" and endpoint is None:
            raise BadRecord("an outbound record needs 'endpoint': the exposed name the application sent it from")
        return Arrival(line, cast(Direction, direction), endpoint, message)

    def read(self, traffic: Traffic) -> Iterator[Arrival | tuple[int, str]]:
        """Yield an ``Arrival`` per usable line, or ``(line, reason)`` for a bad one.

        Blank lines are skipped but keep their line numbers. ``bytes_read``
        grows as a file is read (for progress reporting).

        Raises:
            OSError: the traffic file cannot be opened.
        """
        if isinstance(traffic, (str, Path)):
            with open(traffic, "rb") as handle:
                yield from self._read_items(handle)
        else:
            yield from self._read_items(traffic)

    def _read_items(self, items: Iterable[TrafficItem]) -> Iterator[Arrival | tuple[int, str]]:
        for line, item in enumerate(items, 1):
            if isinstance(item, (bytes, str)):
                owned = True
                self.bytes_read += len(item)
                try:
                    obj = decode_json(item)
                except UnicodeDecodeError:
                    yield line, "not valid UTF-8"
                    continue
                except json.JSONDecodeError as exc:
                    if item.strip():  # blank lines are skipped, not bad
                        yield line, f"not valid JSON ({exc.msg})"
                    continue
                except RecursionError:
                    yield line, "not valid JSON (nested too deeply)"
                    continue
            else:
                obj, owned = item, False
            try:
                yield self.arrival(obj, line, owned=owned)
            except BadRecord as exc:
                yield line, str(exc)


def decode_json(text: str | bytes) -> Any:
    """Decode one JSON document, with ``orjson`` when installed and the standard library otherwise.

    ``orjson`` accepts a subset of what ``json`` accepts (not NaN, lone
    surrogates or integers beyond 64 bits); whatever it refuses is decoded
    again by ``json``, so the result and any error are the standard library's
    either way.

    Raises:
        UnicodeDecodeError: bytes that are not UTF-8.
        json.JSONDecodeError: not JSON.
        RecursionError: nested too deeply for the standard library.
    """
    if _fast_loads is not None:
        try:
            return _fast_loads(text)
        except ValueError:
            pass
    return json.loads(text.decode() if type(text) is bytes else text)


def traffic_size(traffic: Traffic) -> tuple[int | None, str]:
    """Return (total, unit) for progress: the file size in bytes, or the item count if known."""
    if isinstance(traffic, (str, Path)):
        try:
            return os.path.getsize(traffic), "bytes"
        except OSError:
            return None, "bytes"
    try:
        return len(traffic), "lines"  # type: ignore[arg-type]
    except TypeError:
        return None, "lines"


def traffic_name(traffic: Traffic) -> str:
    """A short name for ``traffic`` in reports: the file path, or ``<N items>``."""
    if isinstance(traffic, (str, Path)):
        return str(traffic)
    try:
        return f"<{len(traffic)} items>"  # type: ignore[arg-type]
    except TypeError:
        return "<iterable>"


def prevalidate(arrival: Arrival) -> Message | dict[str, Any]:
    """Validate ``arrival.payload`` into its message class, quickly; on failure return it unchanged.

    The same pydantic validation the dispatcher runs, minus its slow path for
    timestamps (``strptime``): a timestamp already in Vumi's exact format is
    parsed with ``datetime.fromisoformat``, which gives the same value. An
    invalid payload is returned as it was, so the dispatcher validates it
    itself and records the failure in its own words.
    """
    payload = arrival.payload
    stamp = payload.get("timestamp")
    if type(stamp) is str and _VUMI_TIMESTAMP.fullmatch(stamp):
        try:
            payload["timestamp"] = datetime.fromisoformat(stamp)
        except ValueError:
            return payload
    try:
        return _MESSAGE_CLASSES[arrival.direction].model_validate(payload)
    except ValidationError:
        if stamp is not None:
            payload["timestamp"] = stamp
        return payload


def _bare_direction(payload: Mapping[str, Any]) -> Direction:
    return "event" if payload.get("message_type") == "event" else "inbound"


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
