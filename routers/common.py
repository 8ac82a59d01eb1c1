"""Pieces the builtin routers share: name-list config types, one-application routers, store keys."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from ray_dispatch.core.errors import ConfigError, NoRoute
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.router import BaseDispatchRouter, ExposedName, RouterConfig, StaticRoute, TransportName
from routers.simple import as_list

logger = logging.getLogger(__name__)

TransportNameList = Annotated[list[TransportName], BeforeValidator(as_list), Field(min_length=1)]
"""One transport name or a non-empty list of them; each must be in ``transport_names``."""

ExposedNameList = Annotated[list[ExposedName], BeforeValidator(as_list), Field(min_length=1)]
"""One exposed name or a non-empty list of them; each must be in ``exposed_names``."""


def matched_text(hit: bool) -> str:
    """Return ``"matched"`` or ``"did not match"``, for decision traces."""
    return "matched" if hit else "did not match"


def look_up(mapping: Mapping[Any, Any], key: str, what: str, value: Any) -> Any:
    """Return ``mapping[value]`` from config key ``key``, describing ``value`` as ``what``.

    Raises:
        NoRoute: ``no <key> entry for <what> <value> (mapped: [...])``.
    """
    target = mapping.get(value)
    if target is None:
        raise NoRoute(f"no {key} entry for {what} {value!r} (mapped: {sorted(mapping, key=str)})")
    return target


def arrival_endpoint(router: BaseDispatchRouter, msg: TransportUserMessage | TransportEvent) -> str | None:
    """Return the endpoint ``msg`` arrived on, or its ``transport_name`` outside a dispatch.

    In Vumi the two are always equal; the arrival endpoint is the fact, the
    field is what the sender claims (and events may omit it).
    """
    return router.dispatcher.current_endpoint() or msg.get("transport_name")


def publish_to_application(
    router: BaseDispatchRouter,
    endpoint: str,
    msg: TransportUserMessage | TransportEvent,
    *,
    rewrite_transport_name: bool,
) -> None:
    """Publish a user message or an event to application ``endpoint``.

    With ``rewrite_transport_name`` the message's ``transport_name`` becomes
    ``endpoint`` first, so the application sees itself as the transport.
    """
    if rewrite_transport_name and msg.get("transport_name") != endpoint:
        router.explain("transport_name %r rewritten to %r", msg.get("transport_name"), endpoint)
        msg["transport_name"] = endpoint
    if isinstance(msg, TransportEvent):
        router.dispatcher.publish_inbound_event(endpoint, msg)
    else:
        router.dispatcher.publish_inbound_message(endpoint, msg)


def each_transport_to(destination: str, transport_names: Sequence[str], label: str) -> list[StaticRoute]:
    """Inbound routes from every transport to ``destination``, all labelled ``label``."""
    return [StaticRoute(name, destination, "inbound", label) for name in transport_names]


class SingleApplicationRouter(BaseDispatchRouter):
    """Base of routers that present their transports as one application endpoint.

    Config check: the dispatcher must have exactly one exposed name, which
    becomes ``self.exposed_name``.
    """

    exposed_name: str

    def validate_config(self) -> None:
        """Validate the config, then require exactly one exposed name.

        Raises:
            ConfigError: a bad key, or not exactly one name in ``exposed_names``.
        """
        super().validate_config()
        names = list(self.dispatcher.exposed_names)
        if len(names) != 1:
            raise ConfigError(f"exposed_names: {type(self).__name__} needs exactly one exposed name (got {names})")
        self.exposed_name = names[0]


class StoreNamespaceConfig(RouterConfig):
    """Config of routers that keep state in the routing store.

    ``dispatcher_name`` (Vumi's Redis key prefix) namespaces the keys, so
    dispatchers sharing one store keep apart. Vumi's ``redis_manager`` /
    ``redis_config`` are accepted and ignored: the ``store:`` block chooses
    the store.
    """

    dispatcher_name: str | None = None


class StoreBackedRouter(BaseDispatchRouter):
    """Base of routers that keep state in ``self.dispatcher.store`` under namespaced keys.

    Subclasses set ``STORE_AREA`` (e.g. ``"user_grouping"``) and use a config
    model derived from ``StoreNamespaceConfig``.
    """

    STORE_AREA = "router"

    def store_key(self, *parts: str) -> str:
        """Return the routing-store key for ``parts``: ``[dispatcher_name:]area:part:...``."""
        prefix = self.config.dispatcher_name
        return ":".join([*([prefix] if prefix else []), self.STORE_AREA, *parts])

    def setup_routing(self) -> None:
        """Warn about Vumi's Redis settings, which the routing store replaces."""
        for key in ("redis_manager", "redis_config"):
            if key in self.config:
                logger.warning(
                    "%s: config key %r is ignored; the dispatcher's 'store:' block chooses the routing store",
                    type(self).__name__,
                    key,
                )
