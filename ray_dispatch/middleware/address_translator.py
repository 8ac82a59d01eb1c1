"""``AddressTranslationMiddleware``: rewrites outbound ``to_addr`` and, inversely, inbound ``from_addr`` (Vumi's)."""

from __future__ import annotations

from ray_dispatch.core.message import Message
from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareConfig


class AddressTranslationMiddleware(BaseMiddleware):
    """Maps addresses for testing and debugging (Vumi's ``AddressTranslationMiddleware``).

    Config keys:
        outbound_map (required): old ``to_addr`` -> new ``to_addr`` for
            outbound messages; inbound messages get the inverse mapping on
            their ``from_addr``. Addresses not in the map are left alone.
    """

    class CONFIG_CLASS(MiddlewareConfig):  # noqa: N801 - the contract's name
        """Config of ``AddressTranslationMiddleware``."""

        outbound_map: dict[str, str]

    def setup_middleware(self) -> None:
        """Build the inverse map."""
        self.outbound_map: dict[str, str] = self.config.outbound_map
        self.inbound_map = {real: fake for fake, real in self.outbound_map.items()}

    def handle_outbound(self, message: Message, endpoint: str) -> Message:
        """Replace a mapped ``to_addr``."""
        real = self.outbound_map.get(message.get("to_addr"))  # type: ignore[arg-type]
        if real is not None:
            message["to_addr"] = real
        return message

    def handle_inbound(self, message: Message, endpoint: str) -> Message:
        """Replace a ``from_addr`` that some ``to_addr`` maps to with that ``to_addr``."""
        fake = self.inbound_map.get(message.get("from_addr"))  # type: ignore[arg-type]
        if fake is not None:
            message["from_addr"] = fake
        return message
