"""SimpleDispatchRouter: fixed mappings from transports to applications."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

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


def text_keys(value: Any) -> Any:
    """Refuse a mapping with a key that is not text, naming it and saying to quote it.

    YAML reads an unquoted ``8282:`` as a number and ``+31642500021:`` as a
    number without its ``+``; a message's address is text, so such a key
    would never match (Vumi starts and never routes by it).

    Raises:
        ValueError: the first key that is not a string.
    """
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(
                    f"key {key!r} is a {type(key).__name__}, not text: YAML reads unquoted digits as a number"
                    f" (and drops a leading '+'); quote the key, e.g. '{key}': or '+{key}':"
                )
    return value


class OutboundByTransportNameConfig(RouterConfig):
    """Config shared by routers that send outbound by the message's ``transport_name``."""

    transport_mappings: Annotated[dict[str, TransportName], BeforeValidator(text_keys)] = Field(default_factory=dict)


class OutboundByTransportName(BaseDispatchRouter):
    """Outbound routing shared by several routers.

    An outbound message leaves through the transport its ``transport_name``
    names, after remapping through ``transport_mappings`` (alias -> transport).
    A message without one (``transport_name`` None, as Vumi's
    ``ApplicationWorker.send_to`` sends when its ``send_to`` config names no
    transport) is looked up by the application endpoint it came from:
    ``transport_mappings: {<exposed name>: <transport name>}``.
    """

    def dispatch_outbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` out through the transport its ``transport_name`` (or its sender) names, remapped."""
        name = msg.transport_name
        if name is None:
            sender = self.dispatcher.current_endpoint()
            if sender not in self.config.transport_mappings:
                raise NoRoute(
                    f"outbound message from {sender!r} has no transport_name (as Vumi's send_to leaves it);"
                    f" name its transport with transport_mappings: {{{sender}: <transport name>}}"
                )
            self.explain("outbound: no transport_name; routing by the sending application %r", sender)
            name = sender
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
            ``transport_name`` names, after this remapping; one without a
            ``transport_name`` goes by its sender: ``{<exposed name>: <transport>}``.
    """

    BATCH_DECISION_FIELDS = {
        "inbound": ("transport_name",),
        "event": ("transport_name",),
        "outbound": ("transport_name",),
    }

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
