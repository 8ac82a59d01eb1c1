"""Endpoint actor classes used by the Ray tests.

Ray workers import an actor's class by module path, so test actors must live
in an importable module (this one: ``tests/`` is on ``sys.path`` under pytest
and in the Ray workers it starts), never in a test file's ``__main__``.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import Field

from actors.builtin import EchoApplication, EchoApplicationConfig
from actors.endpoint import ApplicationActor, EndpointConfig, TransportActor
from ray_dispatch.core.message import TransportUserMessage


class SlowSinkConfig(EchoApplicationConfig):
    """Config of ``SlowSink``: ``delay`` seconds spent on every user message."""

    delay: float = Field(1.0, ge=0)
    reply: bool = False


class SlowSink(EchoApplication):
    """An ``EchoApplication`` that takes ``delay`` seconds per user message (a busy replica)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = SlowSinkConfig

    async def consume_user_message(self, message: TransportUserMessage) -> None:
        """Sleep ``delay`` seconds, then remember (and optionally echo) the message."""
        await asyncio.sleep(self.config.delay)
        await super().consume_user_message(message)


class GatedSink(EchoApplication):
    """An ``EchoApplication`` that holds every user message until ``release`` is called (busy while a test needs)."""

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._gate = asyncio.Event()

    async def consume_user_message(self, message: TransportUserMessage) -> None:
        """Wait for ``release``, then remember (and optionally echo) the message."""
        await self._gate.wait()
        await super().consume_user_message(message)

    async def release(self) -> None:
        """Let the held messages, and every later one, through."""
        self._gate.set()


class TaggingAppConfig(EndpointConfig):
    """Config of ``TaggingApp``: the ``tag`` put in front of every reply."""

    tag: str = "tagged"


class TaggingApp(ApplicationActor):
    """Replies ``"<tag>/<replica id>: <content>"`` so a test sees which replica answered."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = TaggingAppConfig

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self.handled = 0

    async def consume_user_message(self, message: TransportUserMessage) -> None:
        """Reply with the tag, this replica's id and the content."""
        self.handled += 1
        await self.reply_to(message, f"{self.config.tag}/{self.replica_id}: {message.content}")


class NotAnApplication(TransportActor):
    """A transport class, for checking that an application endpoint refuses it."""


class RefusingApp(ApplicationActor):
    """Refuses every user message whose content starts with ``refuse`` (its receipt fails); takes the rest."""

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self.taken: list[str] = []
        self.hops: dict[str, Any] = {}

    async def consume_user_message(self, message: TransportUserMessage) -> None:
        """Raise for ``refuse...`` content (the dispatcher's receipt for it fails); remember the others."""
        if str(message.content).startswith("refuse"):
            raise ValueError(f"will not take {message.content!r}")
        self.taken.append(message.message_id)
        self.hops[message.message_id] = message.routing_metadata.get("hops")

    async def taken_ids(self) -> list[str]:
        """Ids of the messages taken, in order."""
        return list(self.taken)

    async def hops_of(self, message_id: str) -> Any:
        """``routing_metadata["hops"]`` of a message taken, as it arrived here."""
        return self.hops[message_id]
