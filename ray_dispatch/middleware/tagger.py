"""``TaggingMiddleware``: tags inbound messages by their ``to_addr`` and fills outbound ones by their tag (Vumi's)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from ray_dispatch.core.message import Message
from ray_dispatch.core.middleware import BaseMiddleware, MiddlewareConfig


class IncomingTagging(BaseModel):
    """The ``incoming`` block: how an inbound ``to_addr`` becomes a tag."""

    model_config = ConfigDict(extra="forbid")

    addr_pattern: re.Pattern[str]
    tagpool_template: str
    tagname_template: str


class OutgoingTagging(BaseModel):
    """The ``outgoing`` block: what an outbound message whose tag name matches gets added."""

    model_config = ConfigDict(extra="forbid")

    tagname_pattern: re.Pattern[str]
    msg_template: dict[str, Any]


def message_tag(message: Message) -> tuple[str, str] | None:
    """Return the ``(pool, name)`` tag in ``helper_metadata["tag"]["tag"]``, or None (Vumi's ``map_msg_to_tag``)."""
    tag = message.helper_metadata.get("tag", {}).get("tag")
    return None if tag is None else (tag[0], tag[1])


def _expand_into(match: re.Match[str], target: dict[str, Any], template: dict[str, Any]) -> None:
    """Copy ``template`` into ``target``: strings expanded with ``match``, dicts merged, other values as they are."""
    for key, value in template.items():
        if isinstance(value, dict):
            inner = target.get(key)
            if not isinstance(inner, dict):
                inner = target[key] = {}
            _expand_into(match, inner, value)
        else:
            target[key] = match.expand(value) if isinstance(value, str) else value


class TaggingMiddleware(BaseMiddleware):
    """Adds a tag to inbound messages and fields to outbound ones by their tag (Vumi's ``TaggingMiddleware``).

    Config keys (both blocks required, as in Vumi):
        incoming: ``addr_pattern`` (regex, ``re.match`` on ``to_addr``),
            ``tagpool_template`` and ``tagname_template`` (expanded with
            ``match.expand``); a match stores ``[pool, name]`` in
            ``helper_metadata["tag"]["tag"]``.
        outgoing: ``tagname_pattern`` (regex on the tag's name) and
            ``msg_template`` (merged into a matching outbound message; strings
            expanded with the match, dicts merged, other values copied).
    """

    class CONFIG_CLASS(MiddlewareConfig):  # noqa: N801 - the contract's name
        """Config of ``TaggingMiddleware``."""

        incoming: IncomingTagging
        outgoing: OutgoingTagging

    def setup_middleware(self) -> None:
        """Take the patterns (compiled by the config model)."""
        self.to_addr_re: re.Pattern[str] = self.config.incoming.addr_pattern
        self.tag_re: re.Pattern[str] = self.config.outgoing.tagname_pattern

    def handle_inbound(self, message: Message, endpoint: str) -> Message:
        """Tag ``message`` when its ``to_addr`` matches ``addr_pattern``."""
        to_addr = message.get("to_addr")
        match = self.to_addr_re.match(to_addr) if to_addr is not None else None
        if match is not None:
            incoming = self.config.incoming
            tag = [match.expand(incoming.tagpool_template), match.expand(incoming.tagname_template)]
            message.helper_metadata.setdefault("tag", {})["tag"] = tag
        return message

    def handle_outbound(self, message: Message, endpoint: str) -> Message:
        """Merge ``msg_template`` into ``message`` when its tag's name matches ``tagname_pattern``."""
        tag = message_tag(message)
        match = self.tag_re.match(tag[1]) if tag is not None else None
        if match is not None:
            for key, value in self.config.outgoing.msg_template.items():
                if isinstance(value, dict):
                    current = message.get(key)
                    merged = dict(current) if isinstance(current, dict) else {}
                    _expand_into(match, merged, value)
                    message[key] = merged
                else:
                    message[key] = match.expand(value) if isinstance(value, str) else value
        return message
