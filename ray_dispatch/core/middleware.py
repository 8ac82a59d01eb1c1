"""Middleware: hooks that see every message as it enters and leaves the dispatcher.

Vumi's model: each middleware may handle messages as they are *consumed*
(arrive on an endpoint) and as they are *published* (leave on an endpoint),
per direction (inbound, outbound, event). Consume hooks run in config order,
publish hooks in reverse; ``consume_priority`` / ``publish_priority`` reorder
them (lower runs first, ties keep that order).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ray_dispatch.core.errors import ConfigError, MiddlewareError
from ray_dispatch.core.message import Message
from ray_dispatch.core.router import format_validation_error
from ray_dispatch.core.stores.failures import DIRECTIONS, Direction

__all__ = ["BaseMiddleware", "MiddlewareConfig", "MiddlewareStack"]

Hook = Callable[[Message, str], "Message | Awaitable[Message]"]


class MiddlewareConfig(BaseModel):
    """Base of a middleware's config model (extra keys are allowed)."""

    model_config = ConfigDict(extra="allow")


def _priority(name: str, config: Mapping[str, Any], key: str) -> int:
    value = config.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"invalid config of middleware {name!r}: {key}: must be an integer (got {value!r})")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"invalid config of middleware {name!r}: {key}: must be an integer (got {value!r})") from None


class BaseMiddleware:
    """Base class for dispatcher middleware.

    Override any of ``handle_consume_inbound``, ``handle_consume_outbound``,
    ``handle_consume_event``, ``handle_publish_inbound``,
    ``handle_publish_outbound``, ``handle_publish_event``; each takes
    ``(message, endpoint)`` and returns the message to pass on (sync or async).
    The consume/publish hooks fall back to ``handle_inbound``,
    ``handle_outbound`` and ``handle_event``, which return the message unchanged.
    Returning None is an error; raise ``DropMessage`` to drop on purpose.

    ``setup_middleware`` / ``teardown_middleware`` may be async.
    ``CONFIG_CLASS`` validates this middleware's own config block.
    """

    CONFIG_CLASS: ClassVar[type[MiddlewareConfig]] = MiddlewareConfig

    def __init__(self, name: str, config: Mapping[str, Any], dispatcher: Any) -> None:
        self.name = name
        self.dispatcher = dispatcher
        self.consume_priority: int = _priority(name, config, "consume_priority")
        self.publish_priority: int = _priority(name, config, "publish_priority")
        own = {k: v for k, v in config.items() if k not in ("consume_priority", "publish_priority")}
        try:
            self.config: Any = self.CONFIG_CLASS.model_validate(own)
        except ValidationError as exc:
            raise ConfigError(
                format_validation_error(exc, f"config of middleware {name!r}", self.CONFIG_CLASS)
            ) from None

    def setup_middleware(self) -> Awaitable[None] | None:
        """Prepare the middleware (may be async). The default does nothing."""
        return None

    def teardown_middleware(self) -> Awaitable[None] | None:
        """Release resources (may be async). The default does nothing."""
        return None

    def handle_inbound(self, message: Message, endpoint: str) -> Message | Awaitable[Message]:
        """Fallback for both inbound hooks: return the message unchanged."""
        return message

    def handle_outbound(self, message: Message, endpoint: str) -> Message | Awaitable[Message]:
        """Fallback for both outbound hooks: return the message unchanged."""
        return message

    def handle_event(self, message: Message, endpoint: str) -> Message | Awaitable[Message]:
        """Fallback for both event hooks: return the event unchanged."""
        return message

    def handle_consume_inbound(self, message: Message, endpoint: str) -> Message | Awaitable[Message]:
        """A user message arrived from transport ``endpoint``."""
        return self.handle_inbound(message, endpoint)

    def handle_consume_outbound(self, message: Message, endpoint: str) -> Message | Awaitable[Message]:
        """A user message arrived from application ``endpoint``."""
        return self.handle_outbound(message, endpoint)

    def handle_consume_event(self, message: Message, endpoint: str) -> Message | Awaitable[Message]:
        """An event arrived from transport ``endpoint``."""
        return self.handle_event(message, endpoint)

    def handle_publish_inbound(self, message: Message, endpoint: str) -> Message | Awaitable[Message]:
        """A user message is leaving for application ``endpoint``."""
        return self.handle_inbound(message, endpoint)

    def handle_publish_outbound(self, message: Message, endpoint: str) -> Message | Awaitable[Message]:
        """A user message is leaving through transport ``endpoint``."""
        return self.handle_outbound(message, endpoint)

    def handle_publish_event(self, message: Message, endpoint: str) -> Message | Awaitable[Message]:
        """An event is leaving for application ``endpoint``."""
        return self.handle_event(message, endpoint)


_FALLBACK = {"inbound": "handle_inbound", "outbound": "handle_outbound", "event": "handle_event"}


def _overrides(mw: BaseMiddleware, phase: str, direction: Direction) -> bool:
    cls = type(mw)
    for name in (f"handle_{phase}_{direction}", _FALLBACK[direction]):
        if getattr(cls, name) is not getattr(BaseMiddleware, name):
            return True
    return False


class MiddlewareStack:
    """Runs a list of middleware in Vumi's order; hooks that do nothing are skipped."""

    def __init__(self, middlewares: list[BaseMiddleware]) -> None:
        self.middlewares = middlewares
        consume = sorted(middlewares, key=lambda m: m.consume_priority)
        publish = sorted(reversed(middlewares), key=lambda m: m.publish_priority)
        self._hooks: dict[tuple[str, str], list[tuple[str, Hook]]] = {}
        for direction in DIRECTIONS:
            self._hooks["consume", direction] = [
                (m.name, getattr(m, f"handle_consume_{direction}"))
                for m in consume
                if _overrides(m, "consume", direction)
            ]
            self._hooks["publish", direction] = [
                (m.name, getattr(m, f"handle_publish_{direction}"))
                for m in publish
                if _overrides(m, "publish", direction)
            ]

    def touches_messages(self) -> bool:
        """Whether any middleware has a consume or publish hook (then batches are routed message by message)."""
        return any(self._hooks.values())

    async def setup(self) -> None:
        """Run every middleware's setup, in config order."""
        for mw in self.middlewares:
            result = mw.setup_middleware()
            if inspect.isawaitable(result):
                await result

    async def teardown(self) -> None:
        """Run every middleware's teardown, in reverse config order."""
        for mw in reversed(self.middlewares):
            result = mw.teardown_middleware()
            if inspect.isawaitable(result):
                await result

    def hooks(self, phase: str, direction: Direction) -> list[tuple[str, Hook]]:
        """Return the (middleware name, hook) pairs that run for ``phase`` and ``direction``."""
        return self._hooks[phase, direction]

    async def apply(
        self, phase: str, direction: Direction, message: Message, endpoint: str, trace: list[str] | None = None
    ) -> Message:
        """Pass ``message`` through the hooks; return what the last one returned.

        Raises:
            MiddlewareError: a hook returned None or something that is not a message;
                the text names the middleware and the hook.
            DropMessage: a hook dropped the message.
        """
        for name, hook in self._hooks[phase, direction]:
            result = hook(message, endpoint)
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, Message):
                got = "None" if result is None else f"a {type(result).__name__}"
                raise MiddlewareError(
                    f"middleware {name!r} handle_{phase}_{direction} returned {got}; it must return the message"
                    " (raise DropMessage to drop it)"
                )
            message = result
            if trace is not None:
                trace.append(f"middleware {name!r}: {phase} {direction} on {endpoint!r}")
        return message
