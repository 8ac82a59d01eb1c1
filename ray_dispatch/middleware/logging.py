"""``LoggingMiddleware``: logs every message as it is consumed and published (Vumi's ``vumi.middleware.logging``)."""

from __future__ import annotations

import logging

from pydantic import field_validator

from ray_dispatch.core.message import Message
from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareConfig

_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _render(message: Message) -> str:
    """Vumi JSON of ``message``; a message that cannot be encoded is logged by repr, never refused."""
    try:
        return message.to_json()
    except (TypeError, ValueError, RecursionError):
        ident = message.get("message_id") or message.get("event_id")
        return f"(not JSON-encodable) <{type(message).__name__} {ident!r} with fields {sorted(message.keys())!r}>"


class LoggingMiddleware(BaseMiddleware):
    """Logs every message as it is consumed and published.

    Config keys:
        log_level: ``debug``, ``info`` (default), ``warning`` or ``error``.
        logger_name: logger to use (default ``ray_dispatch.messages``).
    """

    class CONFIG_CLASS(MiddlewareConfig):  # noqa: N801 - the contract's name
        """Config of ``LoggingMiddleware``."""

        log_level: str = "info"
        logger_name: str = "ray_dispatch.messages"

        @field_validator("log_level")
        @classmethod
        def _known_level(cls, value: str) -> str:
            if value.lower() not in _LOG_LEVELS:
                raise ValueError(f"unknown level; use one of {sorted(_LOG_LEVELS)}")
            return value.lower()

    def setup_middleware(self) -> None:
        """Resolve the logger and level."""
        self._level = _LOG_LEVELS[self.config.log_level]
        self._logger = logging.getLogger(self.config.logger_name)

    def _log(self, what: str, message: Message, endpoint: str) -> Message:
        if self._logger.isEnabledFor(self._level):
            self._logger.log(self._level, "%s %s: %s", what, endpoint, _render(message))
        return message

    def handle_consume_inbound(self, message: Message, endpoint: str) -> Message:
        """Log an inbound message arriving from a transport."""
        return self._log("consume inbound from", message, endpoint)

    def handle_consume_outbound(self, message: Message, endpoint: str) -> Message:
        """Log an outbound message arriving from an application."""
        return self._log("consume outbound from", message, endpoint)

    def handle_consume_event(self, message: Message, endpoint: str) -> Message:
        """Log an event arriving from a transport."""
        return self._log("consume event from", message, endpoint)

    def handle_publish_inbound(self, message: Message, endpoint: str) -> Message:
        """Log an inbound message leaving for an application."""
        return self._log("publish inbound to", message, endpoint)

    def handle_publish_outbound(self, message: Message, endpoint: str) -> Message:
        """Log an outbound message leaving through a transport."""
        return self._log("publish outbound to", message, endpoint)

    def handle_publish_event(self, message: Message, endpoint: str) -> Message:
        """Log an event leaving for an application."""
        return self._log("publish event to", message, endpoint)
