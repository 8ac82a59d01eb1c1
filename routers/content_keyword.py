"""ContentKeywordRouter: inbound messages go by the first word of their content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from ray_dispatch.core.errors import NoRoute
from ray_dispatch.core.message import TransportEvent, TransportUserMessage
from ray_dispatch.core.router import ExposedName, StaticRoute, TransportName
from routers.common import StoreBackedRouter, StoreNamespaceConfig, each_transport_to, look_up, matched_text
from routers.simple import text_keys

DEFAULT_ROUTING_MEMORY = 7 * 24 * 3600


def _one_word(keyword: str) -> str:
    if not keyword or keyword.split() != [keyword]:
        raise ValueError(
            f"keyword {keyword!r} must be one word without spaces: only a message's first word is compared"
        )
    return keyword.lower()


Keyword = Annotated[str, AfterValidator(_one_word)]
"""A single word, compared case-insensitively (stored lower-cased)."""


class KeywordRule(BaseModel):
    """One entry of ``rules``: which application gets messages starting with ``keyword``."""

    model_config = ConfigDict(extra="forbid")

    app: ExposedName
    keyword: Keyword
    to_addr: str | None = None
    prefix: str | None = None

    def matches(self, keyword: str, msg: TransportUserMessage) -> bool:
        """Return whether ``msg`` (whose first word is ``keyword``) meets every condition."""
        return (
            keyword == self.keyword
            and (self.to_addr is None or msg.to_addr == self.to_addr)
            and (self.prefix is None or (msg.from_addr or "").startswith(self.prefix))
        )

    def describe(self, label: str, keyword: str, msg: TransportUserMessage) -> str:
        """Say, for a trace, which of this rule's conditions ``msg`` met and which it did not."""
        parts = [f"keyword {self.keyword!r} {matched_text(keyword == self.keyword)} first word {keyword!r}"]
        if self.to_addr is not None:
            parts.append(f"to_addr {self.to_addr!r} {matched_text(msg.to_addr == self.to_addr)} {msg.to_addr!r}")
        if self.prefix is not None:
            hit = (msg.from_addr or "").startswith(self.prefix)
            parts.append(f"prefix {self.prefix!r} {matched_text(hit)} from_addr {msg.from_addr!r}")
        return f"{label} ({self.app}): " + ", ".join(parts)


def first_word(content: str | None) -> str:
    """Return the first whitespace-separated word of ``content``, lower-cased ('' if none)."""
    words = (content or "").split(maxsplit=1)
    return words[0].lower() if words else ""


class ContentKeywordRouter(StoreBackedRouter):
    """Routes inbound messages by keyword (Vumi's ``ContentKeywordRouter``).

    The keyword is the first word of the content (split at any whitespace,
    leading whitespace skipped), compared case-insensitively.
    Every matching rule's application gets an independent copy; a message
    matching no rule (also one with empty or no content) goes to
    ``fallback_application``, and without one is a failure.

    Config keys:
        rules: list of rules, each with ``app`` (exposed name) and
            ``keyword``, and optionally ``to_addr`` (the message's ``to_addr``
            must equal it) and ``prefix`` (the message's ``from_addr`` must
            start with it). A rule without ``app`` or ``keyword`` is a
            ``ConfigError``.
        keyword_mappings: exposed name -> keyword; shorthand for rules with
            only ``app`` and ``keyword``, checked after ``rules``.
        fallback_application: optional exposed name for unmatched messages.
        transport_mappings: outbound ``from_addr`` -> transport name. An
            outbound message leaves through the transport its ``from_addr``
            maps to; an unmapped ``from_addr`` is a failure.
        expire_routing_memory: seconds (default 7 days) to remember which
            application sent an outbound message, so its events return there;
            0 (or ``'0'``) remembers forever, as in Vumi.
        dispatcher_name: optional prefix of the routing-store keys
            (``[dispatcher_name:]content_keyword:message:<message_id>``).
        redis_manager / redis_config: Vumi's; ignored with a logged warning
            (the dispatcher's ``store:`` block chooses the routing store).
    """

    STORE_AREA = "content_keyword"

    class CONFIG_CLASS(StoreNamespaceConfig):  # noqa: N801 - the contract's name
        """Config of ``ContentKeywordRouter``."""

        rules: list[KeywordRule] = Field(default_factory=list)
        keyword_mappings: dict[ExposedName, Keyword] = Field(default_factory=dict)
        fallback_application: ExposedName | None = None
        transport_mappings: Annotated[dict[str, TransportName], BeforeValidator(text_keys)] = Field(
            default_factory=dict
        )
        expire_routing_memory: float = Field(DEFAULT_ROUTING_MEMORY, ge=0)

    @classmethod
    def static_routes(
        cls, config: Any, transport_names: Sequence[str], exposed_names: Sequence[str]
    ) -> list[StaticRoute] | None:
        """Every rule from every transport to its application (labelled by keyword), the fallback,
        and each ``transport_mappings`` entry from every application to its transport."""
        rules = [(rule.app, rule.keyword) for rule in config.rules] + list(config.keyword_mappings.items())
        routes = [
            route for app, word in rules for route in each_transport_to(app, transport_names, f"keyword {word!r}")
        ]
        if config.fallback_application is not None:
            routes += each_transport_to(config.fallback_application, transport_names, "fallback_application")
        routes += [
            StaticRoute(app, transport, "outbound", f"from_addr {addr!r}")
            for addr, transport in config.transport_mappings.items()
            for app in exposed_names
        ]
        return routes

    def setup_routing(self) -> None:
        """Combine ``rules`` and ``keyword_mappings`` into one ordered list of labelled rules."""
        super().setup_routing()
        self.rules: list[tuple[str, KeywordRule]] = [
            (f"rules[{index}]", rule) for index, rule in enumerate(self.config.rules)
        ]
        self.rules += [
            (f"keyword_mappings[{app!r}]", KeywordRule.model_construct(app=app, keyword=keyword))
            for app, keyword in self.config.keyword_mappings.items()
        ]

    def dispatch_inbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` to every application whose rule it matches, else to the fallback."""
        keyword = first_word(msg.content)
        matched = False
        for label, rule in self.rules:
            if self.dispatcher.tracing:
                self.explain(rule.describe(label, keyword, msg))
            if rule.matches(keyword, msg):
                matched = True
                self.dispatcher.publish_inbound_message(rule.app, msg)
        if matched:
            return
        fallback = self.config.fallback_application
        why = "no keyword (empty content)" if not keyword else f"no rule matched keyword {keyword!r}"
        if fallback is None:
            raise NoRoute(f"{why} (to_addr {msg.to_addr!r}, from_addr {msg.from_addr!r}) and no fallback_application")
        self.explain("%s -> fallback_application %r", why, fallback)
        self.dispatcher.publish_inbound_message(fallback, msg)

    async def dispatch_inbound_event(self, event: TransportEvent) -> None:
        """Send ``event`` to the application remembered as the sender of its message."""
        sender = await self.dispatcher.store.get(self.store_key("message", event.user_message_id))
        if sender not in self.dispatcher.exposed_names:
            raise NoRoute(
                f"no routing memory for message {event.user_message_id!r} (not sent through this router"
                + (
                    f", or forgotten after expire_routing_memory {self.config.expire_routing_memory:g} s)"
                    if self.config.expire_routing_memory
                    else ")"
                )
                + (f"; remembered sender {sender!r} is not an exposed name" if sender is not None else "")
            )
        self.explain("routing memory: message %r was sent by %r", event.user_message_id, sender)
        self.dispatcher.publish_inbound_event(sender, event)

    async def dispatch_outbound_message(self, msg: TransportUserMessage) -> None:
        """Send ``msg`` out through the transport its ``from_addr`` maps to, remembering the sender."""
        target: str = look_up(self.config.transport_mappings, "transport_mappings", "from_addr", msg.from_addr)
        sender = self.dispatcher.current_endpoint()
        self.explain("transport_mappings[%r] -> transport %r; remembering sender %r", msg.from_addr, target, sender)
        self.dispatcher.publish_outbound_message(target, msg)
        if sender is not None:
            await self.dispatcher.store.set(
                self.store_key("message", msg.message_id), sender, ttl=self.config.expire_routing_memory or None
            )
