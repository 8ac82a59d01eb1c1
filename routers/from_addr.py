"""FromAddrMultiplexRouter: a pool of single-address transports seen as one transport."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator

from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.router import RouterConfig, StaticRoute, TransportName
from routers.common import SingleApplicationRouter, each_transport_to, look_up, publish_to_application
from routers.simple import text_keys


class FromAddrMultiplexRouter(SingleApplicationRouter):
    """Multiplexes transports by ``from_addr`` (Vumi's ``FromAddrMultiplexRouter``).

    For transports that each serve one external address (XMPP accounts, for
    example), presented to one application as a single transport with many
    addresses. ``transport_name`` is rewritten in both directions. The
    dispatcher must have exactly one exposed name (else a ``ConfigError``).

    Config keys:
        fromaddr_mappings: outbound ``from_addr`` -> transport name. An
            outbound message leaves through the transport its ``from_addr``
            maps to, with ``transport_name`` set to that transport; an
            unmapped ``from_addr`` is a failure.

    Inbound messages and events from any transport go to the exposed name,
    with ``transport_name`` set to it.
    """

    BATCH_DECISION_FIELDS = {
        "inbound": ("transport_name",),
        "event": ("transport_name",),
        "outbound": ("from_addr", "transport_name"),
    }

    class CONFIG_CLASS(RouterConfig):  # noqa: N801 - the contract's name
        """Config of ``FromAddrMultiplexRouter``."""

        fromaddr_mappings: Annotated[dict[str, TransportName], BeforeValidator(text_keys)]

    @classmethod
    def static_routes(
        cls, config: Any, transport_names: Sequence[str], exposed_names: Sequence[str]
    ) -> list[StaticRoute] | None:
        """From every transport to the application; back out by each ``fromaddr_mappings`` entry."""
        routes = [route for app in exposed_names for route in each_transport_to(app, transport_names, "any")]
        routes += [
            StaticRoute(app, transport, "outbound", f"from_addr {addr!r}")
            for addr, transport in config.fromaddr_mappings.items()
            for app in exposed_names
        ]
        return routes

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` to the one application, as if it were the transport."""
        self.explain("inbound from %r -> the only exposed name %r", msg.transport_name, self.exposed_name)
        publish_to_application(self, self.exposed_name, msg, rewrite_transport_name=True)

    def dispatch_inbound_event(self, event: TransportEvent) -> None:
        """Send ``event`` to the one application, as if it were the transport."""
        self.explain("event from %r -> the only exposed name %r", event.transport_name, self.exposed_name)
        publish_to_application(self, self.exposed_name, event, rewrite_transport_name=True)

    def dispatch_outbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` out through the transport its ``from_addr`` maps to."""
        target: str = look_up(self.config.fromaddr_mappings, "fromaddr_mappings", "from_addr", msg.from_addr)
        self.explain("fromaddr_mappings[%r] -> transport %r; transport_name rewritten", msg.from_addr, target)
        msg["transport_name"] = target
        self.dispatcher.publish_outbound_message(target, msg)
