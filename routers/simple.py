"""SimpleDispatchRouter: fixed mappings from transports to applications."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, field_validator

from ray_dispatch.core.errors import NoRoute
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.router import BaseDispatchRouter, ExposedName, RouterConfig, StaticRoute, TransportName
from ray_dispatch.core.stores.failures import Direction


def as_list(value: object) -> object:
    """Accept a single name where a list of names is expected (Vumi allows both)."""
    return [value] if isinstance(value, str) else value


def mapping_routes(mapping: Mapping[str, str | list[str]], direction: Direction, label: str) -> list[StaticRoute]:
    """One route from each key of a config mapping (``route_mappings``, ...) to each of its names."""
    return [
        StaticRoute(source, target, direction, label)
        for source, targets in mapping.items()
        for target in ([targets] if isinstance(targets, str) else targets)
    ]


class OutboundByTransportNameConfig(RouterConfig):
    """Config shared by routers that send outbound by the message's ``transport_name``."""

    transport_mappings: dict[str, TransportName] = Field(default_factory=dict)


class OutboundByTransportName(BaseDispatchRouter):
    """Outbound routing shared by several routers.

    An outbound message leaves through the transport its ``transport_name``
    names, after remapping through ``transport_mappings`` (alias -> transport).
    """

    def dispatch_outbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` out through the transport its ``transport_name`` names (remapped)."""
        name = msg.transport_name
        target = self.config.transport_mappings.get(name, name)
        if target not in self.dispatcher.transport_names:
            raise NoRoute(
                f"outbound transport_name {name!r}"
                + (f" (mapped to {target!r})" if target != name else "")
                + f" is not in transport_names {self.dispatcher.transport_names}"
            )
        self.explain("outbound: transport_name %r -> transport %r", name, target)
        self.dispatcher.publish_outbound_message(target, msg)


class SimpleDispatchRouter(OutboundByTransportName):
    """Routes by fixed mappings (Vumi's ``SimpleDispatchRouter``).

    Config keys:
        route_mappings: transport name -> exposed name, or a list of exposed
            names (each gets an independent copy). Inbound messages and events
            from a transport follow it.
        transport_mappings: optional; outbound ``transport_name`` -> transport
            name. Outbound messages leave through the transport their
            ``transport_name`` names, after this remapping.
    """

    class CONFIG_CLASS(OutboundByTransportNameConfig):  # noqa: N801 - the contract's name
        """Config of ``SimpleDispatchRouter``."""

        route_mappings: dict[TransportName, list[ExposedName]]

        _as_lists = field_validator("route_mappings", mode="before")(
            lambda cls, v: {k: as_list(x) for k, x in v.items()} if isinstance(v, dict) else v
        )

    @classmethod
    def static_routes(
        cls, config: Any, transport_names: Sequence[str], exposed_names: Sequence[str]
    ) -> list[StaticRoute] | None:
        """Each ``route_mappings`` entry: from its transport to each of its applications."""
        return mapping_routes(config.route_mappings, "inbound", "route_mappings")

    def _targets(self, transport_name: str | None, what: str) -> list[str]:
        targets: list[str] | None = self.config.route_mappings.get(transport_name)
        if not targets:
            raise NoRoute(f"no route_mappings entry for transport {transport_name!r} ({what})")
        self.explain("route_mappings[%r] -> %s", transport_name, targets)
        return targets

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` to every application ``route_mappings`` names for its transport."""
        for name in self._targets(msg.transport_name, "inbound message"):
            self.dispatcher.publish_inbound_message(name, msg)

    def dispatch_inbound_event(self, event: TransportEvent) -> None:
        """Send ``event`` to every application ``route_mappings`` names for its transport."""
        for name in self._targets(event.transport_name, "event"):
            self.dispatcher.publish_inbound_event(name, event)
