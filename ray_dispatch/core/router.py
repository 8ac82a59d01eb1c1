"""The router contract: Vumi's ``BaseDispatchRouter``, with typed config.

A router is a plain class that decides where a message goes. It sees only a
narrow dispatcher interface (``RouterDispatcher``): the endpoint names, the
routing store and three ``publish_*`` methods. It never sees actor handles,
so it runs unchanged in the notebook harness and on Ray.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Annotated, Any, ClassVar, NamedTuple, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

from ray_dispatch.core.errors import ConfigError, format_validation_error  # the latter re-exported: its old home
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.stores.failures import Direction
from ray_dispatch.core.stores.routing import RoutingStore


class RouterDispatcher(Protocol):
    """What a router may use of its dispatcher (and nothing more)."""

    transport_names: list[str]
    exposed_names: list[str]
    store: RoutingStore

    def publish_inbound_message(self, endpoint: str, msg: TransportUserMessage) -> None:
        """Send a user message to the application endpoint ``endpoint``."""

    def publish_inbound_event(self, endpoint: str, event: TransportEvent) -> None:
        """Send an event to the application endpoint ``endpoint``."""

    def publish_outbound_message(self, endpoint: str, msg: TransportUserMessage) -> None:
        """Send a user message out through the transport endpoint ``endpoint``."""

    def current_endpoint(self) -> str | None:
        """Return the endpoint the message being dispatched arrived on."""

    def drop(self, reason: str) -> None:
        """Declare that the current message is dropped on purpose (counted, not a failure)."""

    def explain(self, text: str) -> None:
        """Add a line to the current message's decision trace (no-op when not tracing)."""

    @property
    def tracing(self) -> bool:
        """Whether the current message's decisions are being traced."""


# -- config models -----------------------------------------------------------


def _names(info: ValidationInfo, key: str) -> Any:
    return (info.context or {}).get(key)


def _check_transport(value: str, info: ValidationInfo) -> str:
    names = _names(info, "transport_names")
    if names is not None and value not in names:
        raise ValueError(f"{value!r} is not in transport_names {list(names)}")
    return value


def _check_exposed(value: str, info: ValidationInfo) -> str:
    names = _names(info, "exposed_names")
    if names is not None and value not in names:
        raise ValueError(f"{value!r} is not in exposed_names {list(names)}")
    return value


TransportName = Annotated[str, AfterValidator(_check_transport)]
"""A config value that must name one of the dispatcher's ``transport_names``."""

ExposedName = Annotated[str, AfterValidator(_check_exposed)]
"""A config value that must name one of the dispatcher's ``exposed_names``."""


class RouterConfig(BaseModel):
    """Base of every router's config model.

    The whole dispatcher config is validated against it, so unrelated
    top-level keys (``router_class``, middleware blocks, ...) are allowed.
    Supports ``config["key"]`` and ``config.get("key")`` as Vumi's dicts do.
    """

    model_config = ConfigDict(extra="allow", frozen=False)

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.__pydantic_extra__ or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in type(self).model_fields or key in (self.__pydantic_extra__ or {})

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``, or ``default`` when absent."""
        try:
            return self[key]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        yield from type(self).model_fields
        yield from self.__pydantic_extra__ or {}


def validate_router_config(
    config_class: type[RouterConfig],
    raw: Mapping[str, Any],
    transport_names: list[str],
    exposed_names: list[str],
    what: str = "router config",
) -> RouterConfig:
    """Validate ``raw`` against ``config_class``, checking endpoint names.

    Raises:
        ConfigError: names each bad key and its value.
    """
    try:
        return config_class.model_validate(
            dict(raw), context={"transport_names": transport_names, "exposed_names": exposed_names}
        )
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, what, config_class)) from None


class StaticRoute(NamedTuple):
    """A route a router's config fixes, whatever the message (what ``draw`` shows).

    Attributes:
        source: the endpoint messages arrive on.
        destination: the endpoint they may be sent to.
        direction: how they arrive: ``"inbound"`` (user messages from a
            transport, and their events), ``"event"`` (events only) or
            ``"outbound"`` (from an application).
        label: which config entry makes the route, e.g. ``"route_mappings"``
            or ``"keyword 'weather'"``.
    """

    source: str
    destination: str
    direction: Direction
    label: str


# -- the router base class ---------------------------------------------------

DISPATCH_HOOKS: Mapping[str, str] = {
    "inbound": "dispatch_inbound_message",
    "event": "dispatch_inbound_event",
    "outbound": "dispatch_outbound_message",
}
"""The router method that routes each direction."""


class BaseDispatchRouter:
    """Base class for routers (Vumi's contract; a Vumi router ports by changing imports).

    Do not override ``__init__``. Override:

    - ``setup_routing()`` / ``teardown_routing()``: may be async; do I/O here.
    - ``dispatch_inbound_message(msg)``: a user message from a transport.
    - ``dispatch_inbound_event(event)``: an event from a transport.
    - ``dispatch_outbound_message(msg)``: a user message from an application.

    Each dispatch hook may be sync or async, and routes by calling
    ``self.dispatcher.publish_*``. Publishes are delivered when the hook
    returns, each endpoint getting its own copy; the message is taken as it is
    then, so to publish different versions of one message, publish copies
    (``msg.copy()``) rather than mutating it between publishes. Raising ``NoRoute`` (or publishing nothing)
    makes the message a failure record; ``self.dispatcher.drop(reason)``
    declares an intended drop.

    Declare config keys with a ``CONFIG_CLASS`` (a ``RouterConfig`` subclass,
    using ``TransportName`` / ``ExposedName`` for endpoint references). After
    ``validate_config`` runs, ``self.config`` is that model instance.

    Override the class method ``static_routes`` to tell tools (``draw``)
    which routes the config alone fixes.

    Set ``BATCH_DECISION_FIELDS`` (see ``batch_decision_fields``) when a
    direction's decision depends only on the arrival endpoint and a few
    fields: the dispatcher then routes a batch with one decision per distinct value.
    """

    CONFIG_CLASS: ClassVar[type[RouterConfig]] = RouterConfig
    BATCH_DECISION_FIELDS: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Per direction, the message fields its decision depends on besides the arrival endpoint (see
    ``batch_decision_fields``); a direction not listed is routed message by message."""

    def __init__(self, dispatcher: RouterDispatcher, config: Mapping[str, Any]) -> None:
        self.dispatcher = dispatcher
        self.config: Any = config

    def validate_config(self) -> None:
        """Validate ``self.config`` into ``CONFIG_CLASS``. Called by the dispatcher before setup.

        Raises:
            ConfigError: names the bad key and value.
        """
        if isinstance(self.config, RouterConfig):
            return
        self.config = validate_router_config(
            self.CONFIG_CLASS,
            self.config,
            list(self.dispatcher.transport_names),
            list(self.dispatcher.exposed_names),
            what=f"{type(self).__name__} config",
        )

    @classmethod
    def static_routes(
        cls, config: Any, transport_names: Sequence[str], exposed_names: Sequence[str]
    ) -> list[StaticRoute] | None:
        """Return the routes ``config`` fixes, or None when the router knows none before a message arrives.

        Called without a dispatcher or a running router (``ray-dispatch graph``
        and ``draw`` call it), with ``config`` already validated into
        ``CONFIG_CLASS``, so it must only read its arguments. A route that
        depends on a message's content may still be listed, with a label
        saying so (``"keyword 'news'"``). The default knows none.
        """
        return None

    def batch_decision_fields(self, direction: Direction) -> tuple[str, ...] | None:
        """The fields (besides the arrival endpoint) that decide how this router routes ``direction``; None: more.

        A tuple (maybe empty) promises that where the router publishes a
        message, whether it drops or refuses it, and which fields it assigns
        which values depend only on the direction, the endpoint the message
        arrived on and these fields (list a field it assigns as well): never
        on other content, on the routing store or on earlier messages. It
        must publish the message itself (not a copy) and may assign declared
        fields, not change values in place. The dispatcher then asks the router once
        per distinct value in a batch and does the same with the others
        (middleware that touches messages turns this off). None (the default)
        routes each message on its own.

        The default reads ``BATCH_DECISION_FIELDS`` of the class that set it,
        and answers None for a direction whose ``dispatch_*`` hook a subclass
        overrides without setting it again (its decision may depend on more).
        """
        declaring = next(c for c in type(self).__mro__ if "BATCH_DECISION_FIELDS" in c.__dict__)
        fields = declaring.BATCH_DECISION_FIELDS.get(direction)  # type: ignore[attr-defined]
        hook = DISPATCH_HOOKS[direction]
        if fields is None or getattr(type(self), hook) is not getattr(declaring, hook):
            return None
        return tuple(fields)

    def setup_routing(self) -> Awaitable[None] | None:
        """Prepare routing state (may be async). The default does nothing."""
        return None

    def teardown_routing(self) -> Awaitable[None] | None:
        """Release routing state (may be async). The default does nothing."""
        return None

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> Awaitable[None] | None:
        """Route a user message that arrived from a transport."""
        raise NotImplementedError(f"{type(self).__name__} does not route inbound messages")

    def dispatch_inbound_event(self, event: TransportEvent) -> Awaitable[None] | None:
        """Route an event that arrived from a transport."""
        raise NotImplementedError(f"{type(self).__name__} does not route events")

    def dispatch_outbound_message(self, msg: TransportUserMessage) -> Awaitable[None] | None:
        """Route a user message that arrived from an application."""
        raise NotImplementedError(f"{type(self).__name__} does not route outbound messages")

    def explain(self, text: str, *args: Any) -> None:
        """Report a routing decision for the trace; ``text % args`` is only built when tracing.

        A format string that does not match its arguments is shown as is with
        the arguments after it: tracing never changes how a message is routed.
        """
        if self.dispatcher.tracing:
            try:
                line = text % args if args else text
            except (TypeError, ValueError):
                line = f"{text} {args!r}"
            self.dispatcher.explain(line)
