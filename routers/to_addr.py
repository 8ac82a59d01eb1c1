"""ToAddrRouter: inbound messages go to every application whose pattern matches ``to_addr``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from ray_dispatch.core.errors import NoRoute
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.router import ExposedName, StaticRoute
from routers.common import each_transport_to, matched_text
from routers.simple import OutboundByTransportName, OutboundByTransportNameConfig, text_keys


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a valid regular expression ({exc})") from None
    return pattern


RegexPattern = Annotated[str, AfterValidator(_compiles)]
"""A config value that must be a valid Python regular expression."""


class ToAddrRouter(OutboundByTransportName):
    """Routes inbound messages by their ``to_addr`` (Vumi's ``ToAddrRouter``).

    Config keys:
        toaddr_mappings: exposed name -> regular expression. Each pattern is
            matched with ``re.match`` (anchored at the start, not the end)
            against the message's ``to_addr``; every application whose pattern
            matches gets an independent copy. No match is a failure.
        transport_mappings: optional; outbound ``transport_name`` -> transport
            name, as for ``SimpleDispatchRouter``.

    Outbound messages leave as with ``SimpleDispatchRouter``. The router has
    no event routing of its own: events reach the application that sent the
    message they are about through the dispatcher's return-route memory
    (Vumi dropped them); an event it does not know is a failure.
    """

    BATCH_DECISION_FIELDS = {"outbound": ("transport_name",)}

    class CONFIG_CLASS(OutboundByTransportNameConfig):  # noqa: N801 - the contract's name
        """Config of ``ToAddrRouter``."""

        toaddr_mappings: Annotated[dict[ExposedName, RegexPattern], BeforeValidator(text_keys)]

    @classmethod
    def static_routes(
        cls, config: Any, transport_names: Sequence[str], exposed_names: Sequence[str]
    ) -> list[StaticRoute] | None:
        """From every transport to each application, labelled by its ``to_addr`` pattern."""
        return [
            route
            for app, pattern in config.toaddr_mappings.items()
            for route in each_transport_to(app, transport_names, f"to_addr ~ {pattern!r}")
        ]

    def setup_routing(self) -> None:
        """Compile the ``toaddr_mappings`` patterns."""
        self.patterns = [(name, re.compile(pattern)) for name, pattern in self.config.toaddr_mappings.items()]

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` to every application whose pattern matches its ``to_addr``."""
        to_addr = msg.to_addr
        matched = False
        for name, regex in self.patterns:
            hit = to_addr is not None and regex.match(to_addr) is not None
            self.explain(
                "toaddr_mappings[%r]: pattern %r %s to_addr %r", name, regex.pattern, matched_text(hit), to_addr
            )
            if hit:
                matched = True
                self.dispatcher.publish_inbound_message(name, msg)
        if not matched:
            raise NoRoute(
                f"to_addr {to_addr!r} matches none of the toaddr_mappings patterns "
                f"{ {name: regex.pattern for name, regex in self.patterns} }"
            )

    def dispatch_inbound_event(self, event: TransportEvent) -> None:
        """Fail: events only reach their sender through the dispatcher's return-route memory."""
        raise NoRoute(
            f"ToAddrRouter routes events only back to the application that sent message "
            f"{event.user_message_id!r}, and no return route is known for it"
        )
