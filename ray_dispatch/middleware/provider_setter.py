"""Provider setters: ``StaticProviderSettingMiddleware`` and ``AddressPrefixProviderSettingMiddleware`` (Vumi's)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ray_dispatch.core.message import Message
from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareConfig


class StaticProviderSettingMiddleware(BaseMiddleware):
    """Sets one ``provider`` on every inbound and outbound message (Vumi's ``StaticProviderSettingMiddleware``).

    Config keys:
        provider (required): the value ``provider`` is set to.
    """

    class CONFIG_CLASS(MiddlewareConfig):  # noqa: N801 - the contract's name
        """Config of ``StaticProviderSettingMiddleware``."""

        provider: str

    def handle_inbound(self, message: Message, endpoint: str) -> Message:
        """Set ``provider``."""
        message["provider"] = self.config.provider
        return message

    def handle_outbound(self, message: Message, endpoint: str) -> Message:
        """Set ``provider``."""
        message["provider"] = self.config.provider
        return message


def normalize_msisdn(raw: str, country_code: str = "") -> str:
    """Vumi's ``normalize_msisdn``: international form with ``+``; addresses of 5 characters or fewer unchanged."""
    if len(raw) <= 5:
        return raw
    digits = "".join(c for c in raw if c.isdigit() or c == "+")
    if digits.startswith("00"):
        return "+" + digits[2:]
    if digits.startswith("0"):
        return "+" + country_code + digits[1:]
    if digits.startswith("+"):
        return digits
    if digits.startswith(country_code):
        return "+" + digits
    return digits


class MsisdnNormalization(BaseModel):
    """The ``normalize_msisdn`` block."""

    model_config = ConfigDict(extra="forbid")

    country_code: str
    strip_plus: bool = False


class AddressPrefixProviderSettingMiddleware(BaseMiddleware):
    """Sets ``provider`` by address prefix (Vumi's ``AddressPrefixProviderSettingMiddleware``).

    Inbound messages go by their ``from_addr``, outbound by their ``to_addr``;
    the longest matching prefix wins; no match (or no address) sets None.

    Config keys:
        provider_prefixes (required): address prefix -> provider.
        normalize_msisdn: optional ``{country_code, strip_plus}``; the address
            is normalised (as Vumi's ``normalize_msisdn``) for the prefix
            check only, the message is not changed.
    """

    class CONFIG_CLASS(MiddlewareConfig):  # noqa: N801 - the contract's name
        """Config of ``AddressPrefixProviderSettingMiddleware``."""

        provider_prefixes: dict[str, str]
        normalize_msisdn: MsisdnNormalization | None = None

    def setup_middleware(self) -> None:
        """Order the prefixes longest first."""
        self.prefixes = sorted(self.config.provider_prefixes.items(), key=lambda item: -len(item[0]))

    def provider_for(self, addr: str | None) -> str | None:
        """Return the provider of the longest prefix of ``addr`` (normalised if configured), or None."""
        if addr is None:
            return None
        normalization = self.config.normalize_msisdn
        if normalization is not None:
            addr = normalize_msisdn(addr, normalization.country_code)
            if normalization.strip_plus:
                addr = addr.lstrip("+")
        return next((provider for prefix, provider in self.prefixes if addr.startswith(prefix)), None)

    def handle_inbound(self, message: Message, endpoint: str) -> Message:
        """Set ``provider`` by ``from_addr``."""
        message["provider"] = self.provider_for(message.get("from_addr"))
        return message

    def handle_outbound(self, message: Message, endpoint: str) -> Message:
        """Set ``provider`` by ``to_addr``."""
        message["provider"] = self.provider_for(message.get("to_addr"))
        return message
