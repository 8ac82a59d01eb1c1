"""Built-in endpoints for tests, demos and notebooks.

``MemoryTransport``: a transport whose outside world is a Python API. Inject
inbound messages with ``inject``; read what it was asked to send with
``sent``; optionally it acks and delivery-reports what it sends.

``EchoApplication``: replies to every message with its content (optionally
prefixed) and remembers what it received, for inspection.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field

from actors.endpoint import ApplicationActor, EndpointConfig, TransportActor
from actors.wire import to_wire
from ray_dispatch.core.errors import InvalidMessage
from ray_dispatch.core.message import TransportEvent, TransportUserMessage, message_from_dict


async def _wait_until(done: Callable[[], bool], changed: asyncio.Event, timeout: float) -> None:
    """Wait until ``done()`` holds, re-checking whenever ``changed`` is set; give up after ``timeout`` seconds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not done():
                changed.clear()
                await changed.wait()


class MemoryTransportConfig(EndpointConfig):
    """Config of ``MemoryTransport``.

    Attributes:
        transport_type: the ``transport_type`` of injected messages (default ``sms``).
        auto_ack: ack every outbound message it is asked to send (default true).
        auto_delivery_report: also send a delivery report with this status
            (``delivered``, ``failed``, ``pending``), or none (default).
        refuse_to_addr_prefix: refuse (nack) outbound messages to addresses with this prefix.
        keep: how many sent messages to remember (oldest forgotten first).
        loopback: hand every outbound message it is asked to send straight back
            to the dispatcher as a new inbound message from this transport
            (new ``message_id``, same ``routing_metadata``, so the hop count
            grows): a peer that echoes everything, for routing-loop tests.
    """

    transport_type: str = "sms"
    auto_ack: bool = True
    auto_delivery_report: Literal["delivered", "failed", "pending"] | None = None
    refuse_to_addr_prefix: str | None = None
    keep: int = Field(100_000, ge=1)
    loopback: bool = False


class MemoryTransport(TransportActor):
    """A transport whose outside world is its actor API (see the module docstring)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = MemoryTransportConfig

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._sent: deque[dict[str, Any]] = deque(maxlen=self.config.keep)
        self._sent_event = asyncio.Event()
        self.sent_total = 0

    @property
    def transport_type(self) -> str:
        """The transport type of injected messages."""
        return str(self.config.transport_type)

    async def publish_message(self, *, wait: bool = False, **fields: Any) -> TransportUserMessage:
        """As ``TransportActor.publish_message``, with this transport's configured type."""
        fields.setdefault("transport_type", self.transport_type)
        return await super().publish_message(wait=wait, **fields)

    async def inject(
        self,
        content: str | None,
        from_addr: str = "+27831234567",
        to_addr: str = "12345",
        *,
        wait: bool = True,
        **fields: Any,
    ) -> dict[str, Any]:
        """Receive a message from the outside world; return its payload (with ``message_id``).

        With ``wait`` (default) returns once the dispatcher has routed it.

        Raises:
            InvalidMessage: a field is invalid.
        """
        message = await self.publish_message(content=content, from_addr=from_addr, to_addr=to_addr, wait=wait, **fields)
        return to_wire(message)

    async def inject_from_peer(self, **fields: Any) -> dict[str, Any] | None:
        """Receive raw, unchecked input as a real peer would send it; return its payload, or None.

        Unlike ``inject``, invalid input is not an error to the caller: it is
        kept as an undeliverable record (``undeliverable()``), as real
        transports do with what their peer sends.
        """
        message = await self.publish_from_peer(**fields)
        return None if message is None else to_wire(message)

    async def inject_many(self, messages: list[dict[str, Any]], *, wait: bool = True) -> list[str]:
        """Receive many messages (dicts of fields); return their ids.

        Every message is validated before any is sent.

        Raises:
            InvalidMessage: ``messages`` is not a list, or one is invalid (the text names its index and
                field); none was sent.
        """
        if not isinstance(messages, (list, tuple)):
            raise InvalidMessage(f"messages: expected a list of dicts of message fields, got {messages!r:.200}")
        checked = []
        for index, fields in enumerate(messages):
            try:
                if not isinstance(fields, dict) or not all(isinstance(key, str) for key in fields):
                    raise InvalidMessage(f"expected a dict of message fields with string keys, got {fields!r:.200}")
                checked.append(self._inbound_message(fields))
            except InvalidMessage as exc:
                raise InvalidMessage(f"messages[{index}]: {exc}") from None
        for message in checked:
            await self._publish("inbound", message, wait=False)
        if wait:
            await self._link.drain() if self._link else None
        return [m.message_id for m in checked]

    async def inject_event(self, *, wait: bool = True, **fields: Any) -> dict[str, Any]:
        """Receive an event from the outside world (``event_type``, ``user_message_id``, ...).

        Raises:
            InvalidMessage: a field is invalid.
        """
        return to_wire(await self.publish_event(wait=wait, **fields))

    def _inbound_message(self, fields: dict[str, Any]) -> TransportUserMessage:
        """Validate ``fields`` as a user message from the outside world (this transport's defaults filled in)."""
        fields = {
            "transport_name": self.endpoint_name,
            "transport_type": self.transport_type,
            "message_type": "user_message",
            **fields,
        }
        message = message_from_dict(fields)
        if not isinstance(message, TransportUserMessage):
            raise InvalidMessage(f"field 'message_type': expected 'user_message', got {fields['message_type']!r:.200}")
        return message

    async def handle_outbound_message(self, message: TransportUserMessage) -> None:
        """Record ``message`` as sent; ack / nack / delivery-report it as configured; loop it back if configured."""
        if self.config.loopback:
            await self._publish("inbound", self._looped_back(message), wait=False)
        prefix = self.config.refuse_to_addr_prefix
        if prefix and (message.to_addr or "").startswith(prefix):
            await self.publish_nack(message.message_id, f"to_addr {message.to_addr!r} refused by configuration")
            return
        self._sent.append(to_wire(message))
        self.sent_total += 1
        self._sent_event.set()
        if self.config.auto_ack:
            await self.publish_ack(message.message_id, sent_message_id=uuid.uuid4().hex)
        if self.config.auto_delivery_report:
            await self.publish_delivery_report(message.message_id, self.config.auto_delivery_report)

    def _looped_back(self, message: TransportUserMessage) -> TransportUserMessage:
        fields = {k: v for k, v in to_wire(message).items() if k not in ("message_id", "timestamp", "transport_name")}
        fields["routing_metadata"] = copy.deepcopy(message.routing_metadata)
        return self._inbound_message(fields)

    async def sent(self, clear: bool = False) -> list[dict[str, Any]]:
        """Return the payloads of messages this transport was asked to send, oldest first."""
        result = list(self._sent)
        if clear:
            self._sent.clear()
        return result

    async def wait_for_sent(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` messages were sent in total (bounded); return those kept."""
        await _wait_until(lambda: self.sent_total >= count, self._sent_event, timeout)
        return list(self._sent)


class EchoApplicationConfig(EndpointConfig):
    """Config of ``EchoApplication``.

    Attributes:
        prefix: text put before the echoed content (default none).
        reply: whether to reply at all (default true; false makes a pure sink).
        keep: how many received messages and events to remember.
    """

    prefix: str = ""
    reply: bool = True
    keep: int = Field(100_000, ge=1)


class EchoApplication(ApplicationActor):
    """Replies with each message's content and remembers what it received."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = EchoApplicationConfig

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._messages: deque[dict[str, Any]] = deque(maxlen=self.config.keep)
        self._events: deque[dict[str, Any]] = deque(maxlen=self.config.keep)
        self._arrived = asyncio.Event()
        self.received_total = 0

    async def consume_user_message(self, message: TransportUserMessage) -> None:
        """Remember ``message`` and, unless configured not to, echo it back."""
        self._messages.append(to_wire(message))
        self._note_arrival()
        if self.config.reply:
            await self.reply_to(message, f"{self.config.prefix}{message.content or ''}")

    async def _remember_event(self, event: TransportEvent) -> None:
        self._events.append(to_wire(event))
        self._note_arrival()

    consume_ack = consume_nack = consume_delivery_report = _remember_event

    def _note_arrival(self) -> None:
        self.received_total += 1
        self._arrived.set()

    async def received(self, clear: bool = False) -> dict[str, list[dict[str, Any]]]:
        """Return ``{"messages": [...], "events": [...]}`` received so far, oldest first."""
        result = {"messages": list(self._messages), "events": list(self._events)}
        if clear:
            self._messages.clear()
            self._events.clear()
        return result

    async def wait_for(self, count: int, timeout: float = 10.0) -> dict[str, list[dict[str, Any]]]:
        """Wait until at least ``count`` messages and events arrived in total (bounded)."""
        await _wait_until(lambda: self.received_total >= count, self._arrived, timeout)
        return await self.received()
