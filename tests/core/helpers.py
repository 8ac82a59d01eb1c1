"""Test helpers for the core tests: configs, a fake clock, and small routers and middleware.

The routers and middleware here are named in configs by ``class_path(cls)``,
so they load through ``resolve_class`` exactly as user classes do.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ray_dispatch.core.errors import ConfigError, DropMessage, NoRoute
from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage
from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareConfig
from ray_dispatch.core.router import BaseDispatchRouter, ExposedName, RouterConfig
from routers.simple import SimpleDispatchRouter

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_PATH = REPO_ROOT / "examples" / "seed.yaml"


class FakeClock:
    """A monotonic clock the test moves by hand (``MemoryStore(clock=...)``)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


def simple_config(**extra: Any) -> dict[str, Any]:
    """Three transports, two apps: sms -> app1, xmpp -> app1 + app2, ussd unmapped."""
    config: dict[str, Any] = {
        "router_class": "routers.SimpleDispatchRouter",
        "transport_names": ["sms", "xmpp", "ussd"],
        "exposed_names": ["app1", "app2"],
        "route_mappings": {"sms": "app1", "xmpp": ["app1", "app2"]},
    }
    config.update(extra)
    return config


def class_path(cls: type) -> str:
    """The dotted path a config uses to name ``cls`` (whatever pytest named this package)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def router_config(cls: type, **extra: Any) -> dict[str, Any]:
    """``simple_config`` with ``cls`` as the router class."""
    return simple_config(router_class=class_path(cls), **extra)


def trail(msg: Message) -> list[str]:
    """The middleware trail ``Tagger`` left on a message."""
    return list(msg.get("mw_trail") or [])


# -- middleware ---------------------------------------------------------------


class Tagger(BaseMiddleware):
    """Appends ``"<label>:<hook>"`` to the message's ``mw_trail`` in every hook.

    Config: ``label`` (default: the middleware's name).
    """

    class CONFIG_CLASS(MiddlewareConfig):
        """Config of ``Tagger``."""

        label: str | None = None

    def setup_middleware(self) -> None:
        """Record the call (sync setup)."""
        self.calls = ["setup"]

    def teardown_middleware(self) -> None:
        """Record the call (sync teardown)."""
        self.calls.append("teardown")
        TEARDOWN_ORDER.append(self.name)

    def _tag(self, hook: str, message: Message) -> Message:
        label = self.config.label or self.name
        message["mw_trail"] = [*trail(message), f"{label}:{hook}"]
        return message

    def handle_consume_inbound(self, message: Message, endpoint: str) -> Message:
        """Tag."""
        return self._tag("consume_inbound", message)

    def handle_consume_outbound(self, message: Message, endpoint: str) -> Message:
        """Tag."""
        return self._tag("consume_outbound", message)

    def handle_consume_event(self, message: Message, endpoint: str) -> Message:
        """Tag."""
        return self._tag("consume_event", message)

    def handle_publish_inbound(self, message: Message, endpoint: str) -> Message:
        """Tag."""
        return self._tag("publish_inbound", message)

    def handle_publish_outbound(self, message: Message, endpoint: str) -> Message:
        """Tag."""
        return self._tag("publish_outbound", message)

    def handle_publish_event(self, message: Message, endpoint: str) -> Message:
        """Tag."""
        return self._tag("publish_event", message)


TEARDOWN_ORDER: list[str] = []
"""Names of ``Tagger`` middleware in the order they were torn down (tests clear it)."""


class InboundFallbackOnly(BaseMiddleware):
    """Overrides only the ``handle_inbound`` fallback: it must run on consume and on publish."""

    def handle_inbound(self, message: Message, endpoint: str) -> Message:
        """Tag with the endpoint."""
        message["mw_trail"] = [*trail(message), f"inbound@{endpoint}"]
        return message


class OutboundAndEventFallbacks(BaseMiddleware):
    """Overrides ``handle_outbound`` and ``handle_event``."""

    def handle_outbound(self, message: Message, endpoint: str) -> Message:
        """Tag with the endpoint."""
        message["mw_trail"] = [*trail(message), f"outbound@{endpoint}"]
        return message

    def handle_event(self, message: Message, endpoint: str) -> Message:
        """Tag with the endpoint."""
        message["mw_trail"] = [*trail(message), f"event@{endpoint}"]
        return message


class ConsumeOnly(BaseMiddleware):
    """Overrides only ``handle_consume_inbound``: publishing must not run it."""

    def handle_consume_inbound(self, message: Message, endpoint: str) -> Message:
        """Tag."""
        message["mw_trail"] = [*trail(message), "consume-only"]
        return message


class AsyncTagger(BaseMiddleware):
    """Async hooks, async setup and teardown."""

    async def setup_middleware(self) -> None:
        """Async setup."""
        await asyncio.sleep(0)
        self.ready = True

    async def teardown_middleware(self) -> None:
        """Async teardown."""
        await asyncio.sleep(0)
        self.ready = False

    async def handle_inbound(self, message: Message, endpoint: str) -> Message:
        """Tag after yielding to the loop."""
        await asyncio.sleep(0)
        message["mw_trail"] = [*trail(message), f"async@{endpoint}" if self.ready else "not-ready"]
        return message


class ReturnsNone(BaseMiddleware):
    """Breaks the contract: ``handle_consume_inbound`` returns None for content ``"bad"``."""

    def handle_consume_inbound(self, message: Message, endpoint: str) -> Message:
        """Return None for content 'bad'."""
        if message.get("content") == "bad":
            return None  # type: ignore[return-value]
        return message


class ReturnsDictOnPublish(BaseMiddleware):
    """Breaks the contract on publish: returns a plain dict for ``app2``."""

    def handle_publish_inbound(self, message: Message, endpoint: str) -> Message:
        """Return a dict (not a message) when publishing to app2."""
        if endpoint == "app2":
            return message.to_dict()  # type: ignore[return-value]
        return message


class Dropper(BaseMiddleware):
    """Drops inbound messages with content ``"spam"`` on consume, and any publish to ``app2``."""

    def handle_consume_inbound(self, message: Message, endpoint: str) -> Message:
        """Drop spam."""
        if message.get("content") == "spam":
            raise DropMessage("spam filter")
        return message

    def handle_publish_inbound(self, message: Message, endpoint: str) -> Message:
        """Drop copies for app2."""
        if endpoint == "app2":
            raise DropMessage("app2 is muted")
        return message


class Exploding(BaseMiddleware):
    """Raises an unexpected error on consume."""

    def handle_consume_inbound(self, message: Message, endpoint: str) -> Message:
        """Fail."""
        raise RuntimeError("middleware exploded")


class Strict(BaseMiddleware):
    """Has a typed config: ``limit`` must be an int."""

    class CONFIG_CLASS(MiddlewareConfig):
        """Config of ``Strict``."""

        limit: int = 3


# -- routers ------------------------------------------------------------------


class ExplodingRouter(SimpleDispatchRouter):
    """Raises an unexpected error for inbound content ``"boom"``."""

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Explode on 'boom', else route as SimpleDispatchRouter."""
        if msg.content == "boom":
            raise RuntimeError("router exploded")
        super().dispatch_inbound_message(msg)


class MisdirectingRouter(SimpleDispatchRouter):
    """Publishes to an endpoint that does not exist, or the wrong kind of message."""

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """'nowhere' -> unknown endpoint; 'as-event' -> a user message published as an event."""
        if msg.content == "nowhere":
            self.dispatcher.publish_inbound_message("no_such_app", msg)
        elif msg.content == "as-event":
            self.dispatcher.publish_inbound_event("app1", msg)  # type: ignore[arg-type]
        else:
            super().dispatch_inbound_message(msg)


class RewritingRouter(SimpleDispatchRouter):
    """Rewrites the message it routes in place (as FromAddrMultiplex/Redirect do), publishes it, mutates it again."""

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Rewrite transport_name and helper_metadata, publish to app1, then mutate again."""
        msg.transport_name = "app1"
        msg.helper_metadata.setdefault("seen", []).append("rewriter")
        self.dispatcher.publish_inbound_message("app1", msg)
        msg.content = "changed after publishing"


class DroppingRouter(SimpleDispatchRouter):
    """Drops events by design (as TransportToTransportRouter does) and inbound content 'drop'."""

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Drop 'drop', route the rest."""
        if msg.content == "drop":
            self.dispatcher.drop("dropped by design")
            return
        super().dispatch_inbound_message(msg)

    def dispatch_inbound_event(self, event: TransportEvent) -> None:
        """Drop every event."""
        self.dispatcher.drop("events are dropped by design")


class HoardingRouter(SimpleDispatchRouter):
    """Keeps the message to publish it later, outside dispatch (which must raise)."""

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Route normally and keep the message."""
        self.kept = msg
        super().dispatch_inbound_message(msg)

    def publish_later(self) -> None:
        """Publish the kept message after dispatch ended."""
        self.dispatcher.publish_inbound_message("app1", self.kept)


class GateRouter(SimpleDispatchRouter):
    """Refuses inbound messages while the routing store key ``gate`` is ``"closed"`` (for replay tests)."""

    async def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Raise NoRoute while the gate is closed."""
        if await self.dispatcher.store.get("gate") == "closed":
            raise NoRoute("the gate is closed")
        super().dispatch_inbound_message(msg)


class ObservingRouter(SimpleDispatchRouter):
    """Async everything; records setup/teardown and the endpoint each message arrived on."""

    async def setup_routing(self) -> None:
        """Async setup."""
        await asyncio.sleep(0)
        self.arrivals: list[str | None] = []
        self.state = "set up"

    async def teardown_routing(self) -> None:
        """Async teardown."""
        await asyncio.sleep(0)
        self.state = "torn down"

    async def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Record the arrival endpoint, explain, route after yielding to the loop."""
        self.arrivals.append(self.dispatcher.current_endpoint())
        self.explain("observed %r from %r", msg.content, self.dispatcher.current_endpoint())
        await asyncio.sleep(0)
        super().dispatch_inbound_message(msg)


class SetupRefusingRouter(BaseDispatchRouter):
    """Refuses its config at setup (as a router doing I/O in setup_routing might)."""

    class CONFIG_CLASS(RouterConfig):
        """Config of ``SetupRefusingRouter``."""

        target: ExposedName

    def setup_routing(self) -> None:
        """Always refuse."""
        raise ConfigError(f"target: {self.config.target!r} refused at setup")


class SloppyExplainRouter(SimpleDispatchRouter):
    """Calls ``explain`` with a format string that does not match its arguments."""

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Explain badly, then route as SimpleDispatchRouter."""
        self.explain("100% sure: %d", "not a number")
        super().dispatch_inbound_message(msg)
