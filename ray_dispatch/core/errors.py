"""Exceptions raised by ray_dispatch.

Names say whose fault it is: ``ConfigError`` and ``InvalidMessage`` are the
caller's input; ``NoRoute`` is a routing decision that found no destination;
``DeliveryError`` is the world (an endpoint that died or refused).
"""

from __future__ import annotations


class DispatchError(Exception):
    """Base class of every error ray_dispatch raises on purpose."""


class ConfigError(DispatchError, ValueError):
    """A dispatcher, router, middleware or endpoint config is invalid.

    The message names the key (``route_mappings.sms``), the offending value
    and, when loaded from a file, the file.
    """


class InvalidMessage(DispatchError, ValueError):
    """A message or event payload does not satisfy the Vumi message contract.

    The message names the field and what was wrong with it.
    """


class NoRoute(DispatchError):
    """A router found no destination for a message.

    Routers raise it (or let the dispatcher see no publish at all); the
    dispatcher turns it into a failure record with this text as the reason.
    """


class UnknownEndpoint(DispatchError, LookupError):
    """A message was addressed to an endpoint name the dispatcher does not have."""


class MiddlewareError(DispatchError):
    """A middleware hook broke its contract (for example returned None)."""


class RoutingLoop(DispatchError):
    """A message exceeded the dispatcher's hop limit (a routing cycle)."""


class DeliveryError(DispatchError):
    """An endpoint could not take a message (died, refused, timed out)."""


class DropMessage(DispatchError):
    """Raised by a middleware hook to drop the current message on purpose.

    The drop is counted under its reason in the dispatcher's stats and shown in
    traces; it is not a failure record.
    """


class StoreError(DispatchError):
    """A routing or failure store could not do what was asked (the store's side).

    The message names the store (its URL with any password masked) and the key.
    """


class StoreUnavailable(StoreError, ConnectionError):
    """A store's server could not be reached or did not answer in time.

    Raised promptly after a bounded number of reconnect attempts, never by
    hanging; the operation may succeed again once the server is back.
    """
