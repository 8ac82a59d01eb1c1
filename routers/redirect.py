"""RedirectRouter: fixed one-to-one redirects in each direction (and its deprecated alias)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.router import BaseDispatchRouter, ExposedName, RouterConfig, StaticRoute, TransportName
from routers.common import arrival_endpoint, look_up, publish_to_application
from routers.simple import mapping_routes

logger = logging.getLogger(__name__)


class RedirectRouter(BaseDispatchRouter):
    """Redirects each endpoint to one other (Vumi's ``RedirectRouter``).

    Config keys:
        redirect_inbound: transport name -> exposed name. User messages and
            events arriving from the transport go to that application, with
            ``transport_name`` rewritten to the exposed name.
        redirect_outbound: exposed name -> transport name. Outbound messages
            from the application leave through that transport.

    Both default to empty; a message whose endpoint has no redirect is a failure.
    Redirects are looked up by the endpoint the message arrived on (in Vumi
    always equal to its ``transport_name``).
    """

    BATCH_DECISION_FIELDS = {"inbound": ("transport_name",), "event": ("transport_name",), "outbound": ()}

    class CONFIG_CLASS(RouterConfig):  # noqa: N801 - the contract's name
        """Config of ``RedirectRouter``."""

        redirect_inbound: dict[TransportName, ExposedName] = Field(default_factory=dict)
        redirect_outbound: dict[ExposedName, TransportName] = Field(default_factory=dict)

    @classmethod
    def static_routes(
        cls, config: Any, transport_names: Sequence[str], exposed_names: Sequence[str]
    ) -> list[StaticRoute] | None:
        """Each redirect: ``redirect_inbound`` transport to application, ``redirect_outbound`` back."""
        inbound = mapping_routes(config.redirect_inbound, "inbound", "redirect_inbound")
        return inbound + mapping_routes(config.redirect_outbound, "outbound", "redirect_outbound")

    def _redirect_inbound(self, msg: TransportUserMessage | TransportEvent) -> None:
        source = arrival_endpoint(self, msg)
        target: str = look_up(self.config.redirect_inbound, "redirect_inbound", "transport", source)
        self.explain("redirect_inbound[%r] -> %r", source, target)
        publish_to_application(self, target, msg, rewrite_transport_name=True)

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` to the application its transport redirects to."""
        self._redirect_inbound(msg)

    def dispatch_inbound_event(self, event: TransportEvent) -> None:
        """Send ``event`` to the application its transport redirects to."""
        self._redirect_inbound(event)

    def dispatch_outbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` out through the transport its application redirects to."""
        source = arrival_endpoint(self, msg)
        target: str = look_up(self.config.redirect_outbound, "redirect_outbound", "application", source)
        self.explain("redirect_outbound[%r] -> transport %r", source, target)
        self.dispatcher.publish_outbound_message(target, msg)


class RedirectOutboundRouter(RedirectRouter):
    """Deprecated alias of ``RedirectRouter`` (Vumi's ``RedirectOutboundRouter``); same config keys.

    Setting it up warns (``DeprecationWarning`` and a log line).
    """

    def setup_routing(self) -> None:
        """Warn that this router is deprecated in favour of ``RedirectRouter``."""
        text = "RedirectOutboundRouter is deprecated: use RedirectRouter, which has the same config keys"
        warnings.warn(text, DeprecationWarning, stacklevel=2)
        logger.warning(text)
