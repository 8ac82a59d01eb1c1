"""LoadBalancingRouter: one application, outbound spread round-robin over the transports."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.router import RouterConfig, StaticRoute
from routers.common import SingleApplicationRouter, arrival_endpoint, each_transport_to, publish_to_application

logger = logging.getLogger(__name__)

AFFINITY_KEY = "load_balancer"
"""``helper_metadata`` key under which reply affinity keeps its ``transport_names`` stack."""


def push_transport_name(msg: TransportUserMessage, transport_name: str | None) -> None:
    """Push ``transport_name`` onto ``msg.helper_metadata["load_balancer"]["transport_names"]``.

    A malformed entry there (not a dict, not a list) is replaced.
    """
    balancer = msg.helper_metadata.get(AFFINITY_KEY)
    if not isinstance(balancer, dict):
        balancer = msg.helper_metadata[AFFINITY_KEY] = {}
    names = balancer.get("transport_names")
    if not isinstance(names, list):
        names = balancer["transport_names"] = []
    names.append(transport_name)


def pop_transport_name(msg: TransportUserMessage) -> Any:
    """Pop and return the last name pushed by ``push_transport_name`` (None if there is none)."""
    balancer = msg.helper_metadata.get(AFFINITY_KEY)
    names = balancer.get("transport_names") if isinstance(balancer, dict) else None
    return names.pop() if isinstance(names, list) and names else None


class LoadBalancingRouter(SingleApplicationRouter):
    """Balances one application over several transports (Vumi's ``LoadBalancingRouter``).

    The dispatcher must have exactly one exposed name and at least one
    transport name (else a ``ConfigError``). Inbound messages and events from
    every transport go to the exposed name; outbound messages go to the
    transports in turn (round-robin, per dispatcher).

    Config keys:
        reply_affinity: default true. An inbound message records the
            transport it came from by pushing its name onto
            ``helper_metadata["load_balancer"]["transport_names"]`` (replies
            copy ``helper_metadata``); an outbound reply (``in_reply_to`` set)
            pops that name and leaves through the same transport. A reply
            whose popped name is missing or not a transport name falls back to
            round-robin, with a logged warning. When false, replies are
            round-robined too.
        rewrite_transport_names: default true. Inbound messages and events
            get ``transport_name`` set to the exposed name, outbound messages
            to the transport they leave through.
    """

    class CONFIG_CLASS(RouterConfig):  # noqa: N801 - the contract's name
        """Config of ``LoadBalancingRouter``."""

        reply_affinity: bool = True
        rewrite_transport_names: bool = True

    def validate_config(self) -> None:
        """Validate the config; require one exposed name and at least one transport.

        Raises:
            ConfigError: a bad key, not exactly one exposed name, or no transport names.
        """
        super().validate_config()
        if not self.dispatcher.transport_names:
            raise ConfigError("transport_names: LoadBalancingRouter needs at least one transport name (got [])")
        if "rewrite_transport_name" in self.config:
            logger.warning(
                "LoadBalancingRouter: config key 'rewrite_transport_name' is ignored;"
                " the key is 'rewrite_transport_names' (plural)"
            )

    @classmethod
    def static_routes(
        cls, config: Any, transport_names: Sequence[str], exposed_names: Sequence[str]
    ) -> list[StaticRoute] | None:
        """From every transport to the application, and from it out through every transport in turn."""
        routes = [route for app in exposed_names for route in each_transport_to(app, transport_names, "any")]
        routes += [StaticRoute(app, t, "outbound", "round-robin") for app in exposed_names for t in transport_names]
        return routes

    def setup_routing(self) -> None:
        """Start the round-robin cycle over ``transport_names``."""
        self.transport_cycle = itertools.cycle(list(self.dispatcher.transport_names))

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` to the application, recording its transport for reply affinity."""
        if self.config.reply_affinity:
            source = arrival_endpoint(self, msg)
            push_transport_name(msg, source)
            self.explain("reply_affinity: pushed %r onto helper_metadata['load_balancer']['transport_names']", source)
        self.explain("inbound -> the only exposed name %r", self.exposed_name)
        publish_to_application(self, self.exposed_name, msg, rewrite_transport_name=self.config.rewrite_transport_names)

    def dispatch_inbound_event(self, event: TransportEvent) -> None:
        """Send ``event`` to the application."""
        self.explain("event -> the only exposed name %r", self.exposed_name)
        publish_to_application(
            self, self.exposed_name, event, rewrite_transport_name=self.config.rewrite_transport_names
        )

    def dispatch_outbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` out: a reply back the way it came (reply affinity), others round-robin."""
        if self.config.reply_affinity and msg.in_reply_to:
            target = pop_transport_name(msg)
            if target in self.dispatcher.transport_names:
                self.explain("reply_affinity: reply to %r goes back through %r", msg.in_reply_to, target)
            else:
                logger.warning(
                    "LoadBalancingRouter: reply to %r carries unknown load balancer transport %r;"
                    " using round-robin instead",
                    msg.in_reply_to,
                    target,
                )
                target = next(self.transport_cycle)
                self.explain(
                    "reply_affinity: reply to %r carries no known transport name; round-robin -> %r",
                    msg.in_reply_to,
                    target,
                )
        else:
            target = next(self.transport_cycle)
            self.explain("round-robin -> transport %r", target)
        if self.config.rewrite_transport_names:
            msg["transport_name"] = target
        self.dispatcher.publish_outbound_message(target, msg)
