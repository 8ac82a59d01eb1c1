"""Explain a routing decision: run one message through a fresh harness, traced.

::

    from ray_dispatch.tools import explain
    explain("examples/seed.yaml", make_inbound("hi", transport_name="smpp_transport"))

The result lists, in order, each middleware hook the message passed, each
decision the router reported (matches and non-matches, with the reason),
each endpoint it was published to, and any failure. It prints as a text
table and shows as an HTML table in Jupyter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray_dispatch.core.config import DispatcherConfig, load_config
from ray_dispatch.core.dispatcher import DispatchOutcome
from ray_dispatch.core.harness import RouterHarness
from ray_dispatch.core.message import Message
from ray_dispatch.core.recent import Step
from ray_dispatch.core.stores.failures import DIRECTIONS, Direction, FailureRecord

from ._render import html_table, text_table
from ._sync import run_sync
from .traffic import TrafficReader, prevalidate

ConfigSource = Mapping[str, Any] | str | Path | DispatcherConfig
"""A dispatcher config: a dict, a YAML file path, or a loaded ``DispatcherConfig``."""


@dataclass
class Explanation:
    """What happened to one message, step by step.

    Attributes:
        direction: ``inbound``, ``event`` or ``outbound``.
        endpoint: the endpoint the message arrived on.
        message: the message as dispatched (a payload dict if it was invalid).
        steps: the ordered steps, starting with its arrival.
        destinations: where copies were delivered, as ``"direction:endpoint"``.
        failures: failure records, one per failed message or copy.
        dropped: the reason, if the router or a middleware dropped it on purpose.
    """

    direction: Direction
    endpoint: str
    message: Any
    steps: list[Step]
    destinations: list[str] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    dropped: str | None = None

    @classmethod
    def from_outcome(cls, outcome: DispatchOutcome, message: Any = None) -> Explanation:
        """Build an explanation from a traced ``DispatchOutcome`` (``dispatch_*(..., trace=True)``).

        Use it on messages you dispatch through your own ``RouterHarness``::

            outcome = await h.dispatch_inbound(msg, trace=True)
            Explanation.from_outcome(outcome, msg)

        Raises:
            ValueError: the outcome was not traced.
        """
        if outcome.trace is None:
            raise ValueError("this outcome has no trace: dispatch the message with trace=True")
        where = repr(outcome.endpoint)
        named = isinstance(message, (Message, Mapping)) and message.get("transport_name")
        if outcome.endpoint == "None" and not named:
            where = "no endpoint (it names no transport_name)"
        arrived = f"{outcome.direction} {describe_message(message)} arrived on {where}"
        steps = [Step("receive", arrived)]
        steps += [Step(getattr(line, "kind", "router"), str(line)) for line in outcome.trace]
        return cls(
            direction=outcome.direction,
            endpoint=outcome.endpoint,
            message=message,
            steps=steps,
            destinations=[f"{d.direction}:{d.endpoint}" for d in outcome.deliveries if d.failure is None],
            failures=list(outcome.failures),
            dropped=outcome.dropped,
        )

    @property
    def delivered(self) -> bool:
        """Whether at least one copy reached an endpoint."""
        return bool(self.destinations)

    def steps_of(self, kind: str) -> list[str]:
        """The texts of the steps of one ``kind`` (e.g. ``"router"``), in order."""
        return [s.text for s in self.steps if s.kind == kind]

    @property
    def result(self) -> str:
        """One line: where it went, or why it went nowhere."""
        parts = []
        if self.destinations:
            parts.append("delivered to " + ", ".join(self.destinations))
        if self.dropped is not None:
            parts.append(f"dropped: {self.dropped}")
        for failure in self.failures:
            where = f" (to {failure.destination!r})" if failure.destination else ""
            parts.append(f"failed at {failure.stage}{where}: {failure.reason}")
        return "; ".join(parts) or "went nowhere"

    def to_text(self) -> str:
        """The explanation as a numbered text table, then the result."""
        rows = [(i, s.kind, s.text) for i, s in enumerate(self.steps, 1)]
        return text_table(("#", "step", "what happened"), rows, indent="") + f"\nresult: {self.result}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the explanation."""
        message = self.message.to_dict() if isinstance(self.message, Message) else self.message
        return {
            "direction": self.direction,
            "endpoint": self.endpoint,
            "message_id": _message_id(self.message),
            "steps": [{"kind": s.kind, "text": s.text} for s in self.steps],
            "destinations": list(self.destinations),
            "failures": [f.to_dict() for f in self.failures],
            "dropped": self.dropped,
            "result": self.result,
            "message": message,
        }

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"<Explanation {self.direction} on {self.endpoint!r}: {self.result}>"

    def _repr_html_(self) -> str:
        rows = [(i, s.kind, s.text) for i, s in enumerate(self.steps, 1)]
        return html_table(("#", "step", "what happened"), rows, caption=f"result: {self.result}")


async def explain_async(
    config: ConfigSource,
    message: Message | Mapping[str, Any],
    endpoint: str | None = None,
    direction: Direction | None = None,
) -> Explanation:
    """Like ``explain``, for use inside a running event loop (``await explain_async(...)``)."""
    loaded = load_config(config)
    arrival = TrafficReader(loaded).arrival(_as_record(message, endpoint, direction))
    payload = prevalidate(arrival)
    async with RouterHarness(loaded) as harness:
        outcome = await harness.dispatcher.dispatch(arrival.direction, payload, arrival.endpoint, trace=True)
    return Explanation.from_outcome(outcome, payload)


def explain(
    config: ConfigSource,
    message: Message | Mapping[str, Any],
    endpoint: str | None = None,
    direction: Direction | None = None,
) -> Explanation:
    """Run ``message`` through a fresh harness for ``config`` and explain what happened.

    Args:
        config: a dict, a YAML path or a ``DispatcherConfig``.
        message: a message or event object, a Vumi payload dict, or a traffic
            record ``{"endpoint": ..., "direction": ..., "message": {...}}``
            (see ``ray_dispatch.tools.traffic``).
        endpoint: the endpoint it arrives on (default: its ``transport_name``;
            required for outbound messages: the application's exposed name).
        direction: ``inbound``, ``event`` or ``outbound`` (default: ``event``
            for events, ``outbound`` when ``endpoint`` is an exposed name,
            else ``inbound``).

    Works in a terminal and inside Jupyter's running event loop alike. An
    invalid or unroutable message is not an error: the explanation shows the
    failure and its reason.

    Raises:
        ConfigError: the config is invalid.
        BadRecord: ``message`` is not an object, or a record field is bad.
        ValueError: ``direction`` is not one of the three.
    """
    return run_sync(explain_async(config, message, endpoint, direction))


def describe_message(message: Any) -> str:
    """A short description: ``user_message <id> from A to B: 'text'`` or ``ack event <id> about <id>``."""
    if not isinstance(message, Message):
        return "payload (not a valid Vumi message)" if message is not None else "message"
    get = message.get
    if get("message_type") == "event":
        return f"{get('event_type')} event {get('event_id')} about {get('user_message_id')}"
    content = get("content")
    if isinstance(content, str) and len(content) > 40:
        content = content[:39] + "…"
    return f"user_message {get('message_id')} from {get('from_addr')} to {get('to_addr')}: {content!r}"


def _as_record(message: Any, endpoint: str | None, direction: str | None) -> Any:
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)} (got {direction!r})")
    if endpoint is None and direction is None:
        return message
    is_record = isinstance(message, Mapping) and "message" in message and "message_type" not in message
    record = dict(message) if is_record else {"message": message}
    if endpoint is not None:
        record["endpoint"] = endpoint
    if direction is not None:
        record["direction"] = direction
    return record


def _message_id(message: Any) -> str | None:
    if not isinstance(message, (Message, Mapping)):
        return None
    key = "event_id" if message.get("message_type") == "event" else "message_id"
    value = message.get(key)
    return value if isinstance(value, str) else None
