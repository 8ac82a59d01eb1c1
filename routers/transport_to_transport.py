"""TransportToTransportRouter: inbound from one transport goes out through others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.router import BaseDispatchRouter, RouterConfig, StaticRoute, TransportName
from routers.common import TransportNameList, arrival_endpoint, look_up
from routers.simple import mapping_routes


class TransportToTransportRouter(BaseDispatchRouter):
    """Connects transports to transports (Vumi's ``TransportToTransportRouter``).

    Config keys:
        route_mappings: transport name -> transport name, or a list of them.
            A user message arriving from a transport is sent outbound through
            each mapped transport (an independent copy each). An unmapped
            transport is a failure.

    Events are dropped by design (transports cannot receive them), and so
    are outbound messages (no application is connected).
    """

    BATCH_DECISION_FIELDS = {"inbound": (), "event": (), "outbound": ()}

    class CONFIG_CLASS(RouterConfig):  # noqa: N801 - the contract's name
        """Config of ``TransportToTransportRouter``."""

        route_mappings: dict[TransportName, TransportNameList]

    @classmethod
    def static_routes(
        cls, config: Any, transport_names: Sequence[str], exposed_names: Sequence[str]
    ) -> list[StaticRoute] | None:
        """Each ``route_mappings`` entry: from its transport out through each mapped transport."""
        return mapping_routes(config.route_mappings, "inbound", "route_mappings")

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` out through every transport mapped from the one it arrived on."""
        source = arrival_endpoint(self, msg)
        targets: list[str] = look_up(self.config.route_mappings, "route_mappings", "transport", source)
        self.explain("route_mappings[%r] -> transports %s", source, targets)
        for name in targets:
            self.dispatcher.publish_outbound_message(name, msg)

    def dispatch_inbound_event(self, event: TransportEvent) -> None:
        """Drop ``event``: the transport the message went to cannot receive events."""
        self.dispatcher.drop("TransportToTransportRouter drops events: transports cannot receive them")

    def dispatch_outbound_message(self, msg: TransportUserMessage) -> None:
        """Drop ``msg``: only transports are connected, so nothing should send outbound."""
        self.dispatcher.drop("TransportToTransportRouter drops outbound messages: no application is connected")
