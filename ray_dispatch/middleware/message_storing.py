"""``StoringMiddleware``: messages and their events kept in the routing store (Vumi's), with a small query API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ray_dispatch.core.message import Message, TransportEvent
from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareConfig
from ray_dispatch.core.stores.routing import RoutingStore
from ray_dispatch.middleware._vumi_storage import warn_ignored_storage_keys
from ray_dispatch.middleware.tagger import message_tag

DEFAULT_STORE_PREFIX = "message_store"


@dataclass
class StoredMessage:
    """A stored user message: its direction, its payload (Vumi JSON, decoded) and its events, oldest first."""

    direction: str
    message: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)


class MessageStoreReader:
    """Reads what ``StoringMiddleware`` stored in a routing store (the same ``store_prefix``).

    Keys: ``<prefix>:message:<message_id>`` (direction and payload),
    ``<prefix>:event:<event_id>``, ``<prefix>:events:<message_id>:<n>`` /
    ``...:count`` (the message's event ids in arrival order),
    ``<prefix>:batch:<pool:name>:<n>`` / ``...:count`` (message ids by tag).
    """

    def __init__(self, store: RoutingStore, prefix: str = DEFAULT_STORE_PREFIX) -> None:
        self.store = store
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        """Return the store key ``<prefix>:<part>:...``."""
        return ":".join((self.prefix, *parts))

    async def _listed(self, *parts: str) -> list[str]:
        count = await self.store.get(self.key(*parts, "count"), 0)
        items = [await self.store.get(self.key(*parts, str(n))) for n in range(1, int(count) + 1)]  # type: ignore[arg-type]
        return [item for item in items if isinstance(item, str)]

    async def message(self, message_id: str) -> StoredMessage | None:
        """Return the stored message ``message_id`` with its events, or None if it was not stored."""
        record = await self.store.get(self.key("message", message_id))
        if not isinstance(record, dict):
            return None
        events = [
            await self.store.get(self.key("event", event_id)) for event_id in await self._listed("events", message_id)
        ]
        return StoredMessage(
            direction=str(record["direction"]),
            message=record["message"],
            events=[event for event in events if isinstance(event, dict)],
        )

    async def batch(self, tag: str) -> list[str]:
        """Return the ids of the messages stored with tag ``tag`` (``"pool:name"``), oldest first."""
        return await self._listed("batch", tag)


class StoringMiddleware(BaseMiddleware):
    """Stores inbound and outbound messages and their events (Vumi's ``StoringMiddleware``).

    Stored in the dispatcher's routing store (Redis with ``RedisStore``), read
    back with ``MessageStoreReader`` (or this middleware's ``reader``): a
    message and its events by id, the message ids of a batch. A batch is
    named by the message's tag (``pool:name``, set by ``TaggingMiddleware``);
    Vumi's message store maps a tag to the batch an application opened, here
    the tag is the batch. Storing is idempotent per message and event id, so a
    message seen on consume and on publish is stored once.

    Config keys:
        store_prefix: prefix of the store keys (default ``message_store``).
        store_on_consume: also store messages as they arrive, not only as they
            leave (default true).
        redis_manager / riak_manager: Vumi's; ignored with a logged warning
            (the dispatcher's ``store:`` block chooses the routing store).
    """

    class CONFIG_CLASS(MiddlewareConfig):  # noqa: N801 - the contract's name
        """Config of ``StoringMiddleware``."""

        store_prefix: str = DEFAULT_STORE_PREFIX
        store_on_consume: bool = True

    def setup_middleware(self) -> None:
        """Warn about Vumi's storage keys; bind the reader to the dispatcher's store."""
        warn_ignored_storage_keys(self)
        self.reader = MessageStoreReader(self.dispatcher.store, self.config.store_prefix)

    async def _append(self, value: str, *parts: str) -> None:
        count = await self.reader.store.incr(self.reader.key(*parts, "count"))
        await self.reader.store.set(self.reader.key(*parts, str(count)), value)

    async def _store_message(self, message: Message, direction: str) -> Message:
        key = self.reader.key("message", message["message_id"])
        first_time = await self.reader.store.get(key) is None
        payload = json.loads(message.to_json())
        await self.reader.store.set(key, {"direction": direction, "message": payload})
        tag = message_tag(message)
        if first_time and tag is not None:
            await self._append(message["message_id"], "batch", ":".join(tag))
        return message

    async def _store_event(self, event: Message) -> Message:
        key = self.reader.key("event", event["event_id"])
        if await self.reader.store.get(key) is None:
            await self.reader.store.set(key, json.loads(event.to_json()))
            await self._append(event["event_id"], "events", event["user_message_id"])
        return event

    async def handle_inbound(self, message: Message, endpoint: str) -> Message:  # type: ignore[override]
        """Store an inbound message."""
        return await self._store_message(message, "inbound")

    async def handle_outbound(self, message: Message, endpoint: str) -> Message:  # type: ignore[override]
        """Store an outbound message."""
        return await self._store_message(message, "outbound")

    async def handle_event(self, message: Message, endpoint: str) -> Message:  # type: ignore[override]
        """Store an event under the message it is about."""
        assert isinstance(message, TransportEvent)
        return await self._store_event(message)

    async def handle_consume_inbound(self, message: Message, endpoint: str) -> Message:  # type: ignore[override]
        """Store on arrival too, unless ``store_on_consume`` is false."""
        return await self.handle_inbound(message, endpoint) if self.config.store_on_consume else message

    async def handle_consume_outbound(self, message: Message, endpoint: str) -> Message:  # type: ignore[override]
        """Store on arrival too, unless ``store_on_consume`` is false."""
        return await self.handle_outbound(message, endpoint) if self.config.store_on_consume else message

    async def handle_consume_event(self, message: Message, endpoint: str) -> Message:  # type: ignore[override]
        """Store on arrival too, unless ``store_on_consume`` is false."""
        return await self.handle_event(message, endpoint) if self.config.store_on_consume else message
