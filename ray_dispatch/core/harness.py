"""Public test tools: run a dispatcher config in-process, no Ray needed.

``RouterHarness`` is for tests and for trying routing rules in a notebook::

    async with RouterHarness("examples/seed.yaml") as h:
        await h.dispatch_inbound(make_inbound("hi", transport_name="smpp_transport"))
        h.inbound_to("my_application")

Messages pass through the middleware stack, the router and the return-route
memory exactly as on Ray. As on Ray, the dispatcher works on its own copy of
what you hand it (your message object is never changed) and each endpoint
receives its own copy. ``make_inbound`` / ``make_ack`` / ``make_nack`` /
``make_delivery_report`` build messages with sensible defaults.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray_dispatch.core.config import DispatcherConfig
from ray_dispatch.core.dispatcher import Dispatcher, DispatchOutcome
from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage, clone_json
from ray_dispatch.core.receipts import CONFIRMED, Receipt, Refused
from ray_dispatch.core.router import BaseDispatchRouter
from ray_dispatch.core.stores.failures import Direction, FailureRecord, MemoryFailureStore
from ray_dispatch.core.stores.routing import RoutingStore

__all__ = ["MemoryOutbox", "RouterHarness", "make_ack", "make_delivery_report", "make_inbound", "make_nack"]


class MemoryOutbox:
    """An ``Outbox`` that keeps every delivered message in per-endpoint lists.

    Its receipts are already settled: ``CONFIRMED`` (the list has the message
    when ``deliver`` returns), or ``Refused`` for an endpoint told to ``refuse``.
    ``Dispatcher.settle`` runs on them exactly as on Ray.
    """

    def __init__(self) -> None:
        self.delivered: dict[tuple[Direction, str], list[Message]] = defaultdict(list)
        self.refusing: dict[str, BaseException] = {}

    async def deliver(self, direction: Direction, endpoint: str, message: Message) -> Receipt:
        """Append ``message`` to the list for (direction, endpoint); return its receipt.

        The receipt is ``CONFIRMED``, or ``Refused`` (and nothing is kept) when ``endpoint`` refuses.
        """
        refusal = self.refusing.get(endpoint)
        if refusal is not None:
            return Refused(refusal)
        self.delivered[direction, endpoint].append(message)
        return CONFIRMED

    def refuse(self, endpoint: str, error: BaseException | str | None = "refused") -> None:
        """Make deliveries to ``endpoint`` fail after hand-over, with ``error`` (None: accept them again).

        Simulates a destination that took the message but never confirmed it:
        the dispatcher records each such copy at stage ``deliver`` when it settles.
        """
        if error is None:
            self.refusing.pop(endpoint, None)
        else:
            self.refusing[endpoint] = error if isinstance(error, BaseException) else ConnectionError(error)

    def clear(self) -> None:
        """Forget every delivered message."""
        self.delivered.clear()


class RouterHarness:
    """Runs a dispatcher config in-process and records what reaches each endpoint.

    Args:
        config: a dict, a YAML path or a ``DispatcherConfig``.
        store: routing store to use (default: as the config says, in-memory).

    Use it as ``async with RouterHarness(config) as h:`` (setup on entering,
    teardown on leaving). Outside ``async with`` (a quick try in a shell), the
    first ``dispatch_*`` runs the setup; call ``close()`` when done.

    Raises:
        ConfigError: when the config, the router's or a middleware's config is
            invalid (on construction), or setup refuses it (on entering or on
            the first dispatch).
    """

    def __init__(
        self, config: Mapping[str, Any] | str | Path | DispatcherConfig, *, store: RoutingStore | None = None
    ) -> None:
        self.outbox = MemoryOutbox()
        self.failure_store = MemoryFailureStore()
        self.dispatcher = Dispatcher(config, self.outbox, store=store, failures=self.failure_store)
        self._set_up = False

    async def __aenter__(self) -> RouterHarness:
        await self._setup()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _setup(self) -> None:
        if not self._set_up:
            await self.dispatcher.start()
            self._set_up = True

    async def close(self) -> None:
        """Tear down the router and middleware and close the stores (what leaving ``async with`` does)."""
        await self.dispatcher.stop()

    @property
    def router(self) -> BaseDispatchRouter:
        """The router instance."""
        return self.dispatcher.router

    @property
    def failures(self) -> list[FailureRecord]:
        """Failure records, oldest first."""
        return self.failure_store.records()

    async def dispatch_inbound(
        self, msg: TransportUserMessage | dict[str, Any], endpoint: str | None = None, *, trace: bool = False
    ) -> DispatchOutcome:
        """Dispatch ``msg`` as received from transport ``endpoint`` (default ``msg["transport_name"]``).

        Never raises for a bad message: it becomes a failure record in the outcome and ``failures``.
        """
        await self._setup()
        return await self.dispatcher.dispatch_inbound_message(_as_received(msg), endpoint, trace=trace)

    async def dispatch_event(
        self, event: TransportEvent | dict[str, Any], endpoint: str | None = None, *, trace: bool = False
    ) -> DispatchOutcome:
        """Dispatch ``event`` as received from transport ``endpoint`` (default ``event["transport_name"]``).

        Never raises for a bad event: it becomes a failure record in the outcome and ``failures``.
        """
        await self._setup()
        return await self.dispatcher.dispatch_inbound_event(_as_received(event), endpoint, trace=trace)

    async def dispatch_outbound(
        self, msg: TransportUserMessage | dict[str, Any], endpoint: str, *, trace: bool = False
    ) -> DispatchOutcome:
        """Dispatch ``msg`` as received from exposed endpoint ``endpoint``.

        Never raises for a bad message: it becomes a failure record in the outcome and ``failures``.
        """
        await self._setup()
        return await self.dispatcher.dispatch_outbound_message(_as_received(msg), endpoint, trace=trace)

    def inbound_to(self, endpoint: str) -> list[TransportUserMessage]:
        """User messages delivered to application ``endpoint``, in order."""
        return list(self.outbox.delivered.get(("inbound", endpoint), []))  # type: ignore[arg-type]

    def events_to(self, endpoint: str) -> list[TransportEvent]:
        """Events delivered to application ``endpoint``, in order."""
        return list(self.outbox.delivered.get(("event", endpoint), []))  # type: ignore[arg-type]

    def outbound_to(self, endpoint: str) -> list[TransportUserMessage]:
        """User messages sent out through transport ``endpoint``, in order."""
        return list(self.outbox.delivered.get(("outbound", endpoint), []))  # type: ignore[arg-type]

    def clear(self) -> None:
        """Forget delivered messages and failure records (routing state is kept)."""
        self.outbox.clear()
        self.failure_store.clear()


def _as_received(payload: Any) -> Any:
    """The dispatcher's own copy of ``payload``, as if it had crossed the wire to a dispatcher actor.

    Routers may rewrite the message they route (``transport_name``,
    ``helper_metadata``) and the dispatcher counts hops on it; the caller's
    object must see none of that. Payloads that cannot be copied are passed
    as they are, for the dispatcher to refuse with a failure record.
    """
    try:
        if isinstance(payload, Message):
            return payload.copy()
        if isinstance(payload, dict):
            return clone_json(payload)
    except Exception:
        return payload
    return payload


def make_inbound(
    content: str | None = "hello",
    *,
    to_addr: str | None = "12345",
    from_addr: str | None = "+27831234567",
    transport_name: str = "sms",
    transport_type: str = "sms",
    **fields: Any,
) -> TransportUserMessage:
    """Build a user message with test-friendly defaults (override any field)."""
    return TransportUserMessage(
        content=content,
        to_addr=to_addr,
        from_addr=from_addr,
        transport_name=transport_name,
        transport_type=transport_type,
        **fields,
    )


def make_ack(msg: TransportUserMessage | str, *, transport_name: str | None = None, **fields: Any) -> TransportEvent:
    """Build an ack for ``msg`` (a message or its id)."""
    return _event(msg, "ack", transport_name, {"sent_message_id": "remote-id", **fields})


def make_nack(
    msg: TransportUserMessage | str, reason: str = "refused", *, transport_name: str | None = None, **fields: Any
) -> TransportEvent:
    """Build a nack for ``msg`` (a message or its id)."""
    return _event(msg, "nack", transport_name, {"nack_reason": reason, **fields})


def make_delivery_report(
    msg: TransportUserMessage | str,
    status: str = "delivered",
    *,
    transport_name: str | None = None,
    **fields: Any,
) -> TransportEvent:
    """Build a delivery report for ``msg`` (a message or its id)."""
    return _event(msg, "delivery_report", transport_name, {"delivery_status": status, **fields})


def _event(
    msg: TransportUserMessage | str, event_type: str, transport_name: str | None, fields: dict[str, Any]
) -> TransportEvent:
    if isinstance(msg, TransportUserMessage):
        message_id, transport_name = msg.message_id, transport_name or msg.transport_name
        transport_type = msg.transport_type
    else:
        message_id, transport_type = msg, "sms"
    return TransportEvent(
        user_message_id=message_id,
        event_type=event_type,  # type: ignore[arg-type]
        transport_name=transport_name or "sms",
        transport_type=transport_type,
        **fields,
    )
