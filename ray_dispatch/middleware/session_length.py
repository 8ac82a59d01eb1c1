"""``SessionLengthMiddleware``: session start and end times in ``helper_metadata`` (Vumi's), via the routing store."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from ray_dispatch.core.message import Message
from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareConfig
from ray_dispatch.middleware._vumi_storage import warn_ignored_storage_keys
from ray_dispatch.middleware.tagger import message_tag

SESSION_START = "session_start"
SESSION_END = "session_end"


class SessionLengthMiddleware(BaseMiddleware):
    """Stamps session start (and end) times on messages (Vumi's ``SessionLengthMiddleware``).

    A message with ``session_event: new`` starts a session: the time now is
    remembered in the routing store (key ``session_length:<namespace>:<address>:session_created``,
    the address being ``to_addr`` inbound and ``from_addr`` outbound) and set
    as ``helper_metadata[field_name]["session_start"]``. Later messages of the
    session get the remembered start; ``session_event: close`` also gets
    ``session_end`` (the time now) and forgets the start. Times are Unix
    seconds (floats). A message whose namespace is None passes unchanged.

    Config keys:
        timeout: seconds the start is remembered (default 600).
        namespace_type: ``transport_name`` (default) or ``tag`` (the
            ``pool:name`` of the ``TaggingMiddleware`` tag, which must run
            earlier).
        field_name: key in ``helper_metadata`` (default ``session``).
        redis_manager: Vumi's; ignored with a logged warning (the
            dispatcher's ``store:`` block chooses the routing store).
    """

    class CONFIG_CLASS(MiddlewareConfig):  # noqa: N801 - the contract's name
        """Config of ``SessionLengthMiddleware``."""

        timeout: float = Field(600, gt=0)
        namespace_type: Literal["transport_name", "tag"] = "transport_name"
        field_name: str = "session"

    clock: Callable[[], float] = staticmethod(time.time)
    """Where the time comes from (Unix seconds); tests may replace it."""

    def setup_middleware(self) -> None:
        """Warn about Vumi's storage keys."""
        warn_ignored_storage_keys(self)

    def _namespace(self, message: Message) -> str | None:
        if self.config.namespace_type == "tag":
            tag = message_tag(message)
            return None if tag is None else ":".join(tag)
        return message.get("transport_name")  # type: ignore[no-any-return]

    def _metadata(self, message: Message) -> dict[str, float]:
        return message.helper_metadata.setdefault(self.config.field_name, {})  # type: ignore[no-any-return]

    async def _process(self, message: Message, address: str | None) -> Message:
        namespace = self._namespace(message)
        if namespace is None:
            return message
        key = f"session_length:{namespace}:{address}:session_created"
        store = self.dispatcher.store
        known = message.helper_metadata.get(self.config.field_name, {})
        event = message.get("session_event")
        if event == "new":
            if SESSION_START not in known:
                now = self.clock()
                await store.set(key, now, ttl=self.config.timeout)
                self._metadata(message)[SESSION_START] = now
        elif event == "close":
            if SESSION_END not in known:
                self._metadata(message)[SESSION_END] = self.clock()
            if SESSION_START not in known:
                await self._copy_start(message, key)
                await store.delete(key)
        elif SESSION_START not in known:
            await self._copy_start(message, key)
        return message

    async def _copy_start(self, message: Message, key: str) -> None:
        start = await self.dispatcher.store.get(key)
        if start is not None:
            self._metadata(message)[SESSION_START] = float(start)

    async def handle_inbound(self, message: Message, endpoint: str) -> Message:  # type: ignore[override]
        """Stamp an inbound message (its session is keyed by ``to_addr``)."""
        return await self._process(message, message.get("to_addr"))

    async def handle_outbound(self, message: Message, endpoint: str) -> Message:  # type: ignore[override]
        """Stamp an outbound message (its session is keyed by ``from_addr``)."""
        return await self._process(message, message.get("from_addr"))
