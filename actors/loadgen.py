"""Load generation endpoints for benchmarks: ``LoadTransport`` and ``SinkApplication``.

``LoadTransport`` generates inbound user messages itself, from payloads it
validated once when it started (many users, optional keywords), so what a
benchmark measures is the path through the dispatcher, not message
construction. Each message gets a fresh ``message_id`` of the form
``<run>-<transport>-<replica>-<seq>`` and, when it is handed to the
dispatcher link, its send time (``time.time()``) in
``transport_metadata["sent_at"]`` and a fresh ``timestamp``. It can pace
itself to a target rate (light-load latency runs) or send as fast as the
link's backpressure lets it. It acks every outbound message it is asked to
send (as ``MemoryTransport`` does), from a pre-built event payload.

``SinkApplication`` counts the user messages it receives by id (exactly,
in a compact bitmap per sender, so duplicates and losses show), keeps the
transport-to-application latency (now minus ``sent_at``) in a bounded
reservoir, optionally replies to each message (so outbound messages and the
transport's acks flow back through the dispatcher), and counts the acks.

Both report through actor methods (``results``); both are importable by
module path, as Ray workers need.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, ClassVar

from pydantic import Field

from actors.endpoint import ApplicationActor, EndpointConfig, TransportActor
from actors.metrics import LatencyReservoir
from actors.wire import to_wire
from ray_dispatch.core.message import Message, TransportEvent, TransportUserMessage, message_from_dict, utcnow
from ray_dispatch.core.stores.failures import Direction

SENT_AT = "sent_at"
"""The ``transport_metadata`` key holding a message's send time (seconds since the epoch)."""


# -- measurement helpers ----------------------------------------------------------


class IdCounter:
    """Counts ids of the form ``<prefix>-<seq>`` exactly, one bit per sequence number.

    Ids of another shape are kept in a plain set. ``unique`` is how many
    distinct ids were seen; ``duplicates`` how many were seen again.
    """

    def __init__(self) -> None:
        self._bits: dict[str, bytearray] = {}
        self._other: set[str] = set()
        self.unique = 0
        self.duplicates = 0

    def add(self, message_id: str) -> bool:
        """Count ``message_id``; return False if it was seen before."""
        prefix, _, seq_text = message_id.rpartition("-")
        if not prefix or not seq_text.isdigit():
            if message_id in self._other:
                self.duplicates += 1
                return False
            self._other.add(message_id)
            self.unique += 1
            return True
        seq = int(seq_text)
        bits = self._bits.get(prefix)
        if bits is None:
            bits = self._bits[prefix] = bytearray(max(1024, seq // 8 + 1))
        byte, mask = seq >> 3, 1 << (seq & 7)
        if byte >= len(bits):
            bits.extend(bytes(max(len(bits), byte + 1 - len(bits))))
        if bits[byte] & mask:
            self.duplicates += 1
            return False
        bits[byte] |= mask
        self.unique += 1
        return True

    def per_prefix(self) -> dict[str, int]:
        """Distinct sequence numbers seen per prefix."""
        return {prefix: sum(bin(b).count("1") for b in bits) for prefix, bits in self._bits.items()}

    def clear(self) -> None:
        """Forget everything."""
        self._bits.clear()
        self._other.clear()
        self.unique = 0
        self.duplicates = 0


# -- the load transport -------------------------------------------------------------


def template_messages(transport_name: str, config: Any, transport_type: str = "sms") -> list[TransportUserMessage]:
    """Validate ``config.templates`` user messages once and return them (``stamped_message`` copies one per message).

    ``config`` has the ``LoadTransportConfig`` fields: users cycle through
    ``from_addr`` values, keywords (if any) through the first word.
    """
    templates = []
    for index in range(config.templates):
        words = [config.keywords[index % len(config.keywords)]] if config.keywords else []
        message = message_from_dict(
            {
                "message_type": "user_message",
                "content": " ".join([*words, config.content]),
                "from_addr": f"+2783{index % config.users:07d}",
                "to_addr": config.to_addr,
                "transport_name": transport_name,
                "transport_type": transport_type,
                "routing_metadata": {},  # as a transport's message has it (Vumi's constructor adds it)
            }
        )
        templates.append(message)
    return templates  # type: ignore[return-value]


def build_templates(transport_name: str, config: Any, transport_type: str = "sms") -> list[dict[str, Any]]:
    """The wire payloads of ``template_messages`` (for code that ships payload dicts, as the raw-Ray baseline)."""
    return [to_wire(message) for message in template_messages(transport_name, config, transport_type)]


def stamped(template: dict[str, Any], message_id: str) -> dict[str, Any]:
    """A copy of payload ``template`` with ``message_id``, ``timestamp`` now and ``transport_metadata.sent_at`` now.

    The metadata dicts are copied too: payloads pickled in one batch that
    shared a dict would share it on arrival, and the dispatcher counts hops
    in ``routing_metadata``.
    """
    payload = dict(template)
    payload["helper_metadata"] = dict(template["helper_metadata"])
    payload["routing_metadata"] = dict(template["routing_metadata"])
    payload["message_id"] = message_id
    payload["timestamp"] = utcnow()
    payload["transport_metadata"] = {SENT_AT: time.time()}
    return payload


def stamped_message(template: TransportUserMessage, message_id: str) -> TransportUserMessage:
    """``stamped`` for a validated template message, built without validating again (``Message.trusted_copy``).

    Every new value is of its field's type; the metadata dicts are fresh, as ``stamped``'s.
    """
    return template.trusted_copy(  # type: ignore[return-value]
        message_id=message_id,
        timestamp=utcnow(),
        helper_metadata={},
        routing_metadata={},
        transport_metadata={SENT_AT: time.time()},
    )


class LoadTransportConfig(EndpointConfig):
    """Config of ``LoadTransport``.

    Attributes:
        users: distinct ``from_addr`` values the messages come from.
        templates: distinct pre-built payloads (users and keywords cycle through them).
        content: message text after the keyword.
        keywords: first words to rotate through (for keyword routing); none by default.
        to_addr: the ``to_addr`` of every message.
        auto_ack: ack every outbound message this transport is asked to send.
        yield_every: let the event loop run after this many sends (as a real
            transport does between network reads), so the link's batches go out.
    """

    users: int = Field(1000, ge=1)
    templates: int = Field(1000, ge=1)
    content: str = "hello from the load generator"
    keywords: list[str] = Field(default_factory=list)
    to_addr: str = "12345"
    auto_ack: bool = True
    yield_every: int = Field(100, ge=1)


class LoadTransport(TransportActor):
    """Generates inbound messages itself and acks outbound ones (see the module docstring)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = LoadTransportConfig
    TRANSPORT_TYPE: ClassVar[str] = "sms"

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._templates = self._build_templates()
        self._ack_template = message_from_dict(
            {
                "message_type": "event",
                "event_type": "ack",
                "user_message_id": "template",
                "sent_message_id": "template",
                "transport_name": endpoint_name,
                "transport_type": self.TRANSPORT_TYPE,
            }
        )
        self._runs = 0
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self.stats: dict[str, Any] = self._empty_stats()

    def _build_templates(self) -> list[TransportUserMessage]:
        return template_messages(self.endpoint_name, self.config, self.TRANSPORT_TYPE)

    @staticmethod
    def _empty_stats() -> dict[str, Any]:
        return {
            "run": None,
            "offered": 0,
            "confirmed": 0,
            "failed": 0,
            "elapsed": 0.0,
            "drained": True,
            "outbound_received": 0,
            "acks_sent": 0,
            "acks_confirmed": 0,
            "acks_failed": 0,
        }

    def _message(self, prefix: str, seq: int) -> TransportUserMessage:
        """Build message ``seq`` of a run from its template, stamped with the time now."""
        return stamped_message(self._templates[seq % len(self._templates)], f"{prefix}-{seq}")

    def _confirmed(self, future: asyncio.Future[Any]) -> None:
        """A link without ``publish`` confirmed (or failed) one generated message."""
        if future.cancelled() or future.exception() is not None:
            self.stats["failed"] += 1
        else:
            self.stats["confirmed"] += 1

    def _inbound_unsent(self, direction: Direction, message: Message, error: BaseException) -> None:
        """The link's batch settled and no dispatcher took this generated message."""
        self.stats["failed"] += 1

    async def generate(
        self,
        count: int | None = None,
        *,
        rate: float | None = None,
        duration: float | None = None,
        run: str | None = None,
        drain_timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Send messages until ``count`` were sent or ``duration`` seconds passed; wait for confirmations.

        ``rate`` paces sending (messages per second); without it messages go as
        fast as the link's backpressure allows. Returns the run's counters:
        ``offered`` (handed to the link), ``confirmed`` and ``failed`` (by the
        dispatcher), ``elapsed`` (seconds from the first send to the last
        confirmation), ``send_elapsed`` (until the last send) and ``prefix``
        (the id prefix of this run's messages).

        Raises:
            ValueError: neither ``count`` nor ``duration`` is given, or ``rate`` is not positive.
            RuntimeError: the transport is not attached to a dispatcher.
        """
        if count is None and duration is None:
            raise ValueError("generate needs count or duration")
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive (got {rate!r})")
        await self.start()
        if self._link is None:
            raise RuntimeError(f"transport {self.endpoint_name!r} is not attached to a dispatcher")
        self._runs += 1
        prefix = f"{run or 'run' + str(self._runs)}-{self.endpoint_name}-{self.replica_id}"
        self.stats = {**self._empty_stats(), "run": prefix}
        stats = self.stats
        link = self._link
        limit = count if count is not None else 2**62
        stats["started_at"] = time.time()
        started = time.monotonic()
        deadline = started + duration if duration is not None else float("inf")
        interval = 1.0 / rate if rate else 0.0
        yield_every = self.config.yield_every
        publish = getattr(link, "publish", None)  # confirmed per batch; else a future per message
        sent = 0
        while sent < limit:
            now = time.monotonic()
            if now >= deadline:
                break
            if interval:
                due = started + sent * interval
                if due - now > 0.0005:
                    await asyncio.sleep(due - now)
            if publish is not None:
                await publish("inbound", self._message(prefix, sent), self._inbound_unsent)
            else:
                future = await link.send("inbound", self._message(prefix, sent))
                future.add_done_callback(self._confirmed)
            sent += 1
            stats["offered"] = sent
            if sent % yield_every == 0:  # paced too: a run behind schedule never sleeps above
                await asyncio.sleep(0)
        send_elapsed = time.monotonic() - started
        stats["drained"] = await link.drain(drain_timeout)
        if publish is not None:  # what did not fail is confirmed, once drained (else at most that)
            unsettled = 0 if stats["drained"] else getattr(link, "unconfirmed", 0)
            stats["confirmed"] = max(0, sent - stats["failed"] - unsettled)
        stats["elapsed"] = time.monotonic() - started
        stats["send_elapsed"] = send_elapsed
        stats["prefix"] = prefix
        stats["offered_rate"] = rate
        return dict(stats)

    async def start_generating(self, count: int | None = None, **kw: Any) -> str:
        """Start ``generate`` in the background (see ``generate``); return at once.

        Raises:
            RuntimeError: a background run is still going.
        """
        if self._task is not None and not self._task.done():
            raise RuntimeError(f"transport {self.endpoint_name!r} is already generating")
        self._task = asyncio.get_running_loop().create_task(self.generate(count, **kw))
        await asyncio.sleep(0)
        return str(self.stats.get("run"))

    async def wait_generated(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the background run (bounded) and return its counters.

        Raises:
            RuntimeError: no background run was started.
            TimeoutError: it did not finish within ``timeout``.
        """
        if self._task is None:
            raise RuntimeError(f"transport {self.endpoint_name!r} has no background run")
        return await asyncio.wait_for(asyncio.shield(self._task), timeout)

    async def results(self) -> dict[str, Any]:
        """Counters of the current or last run (see ``generate``).

        With a link that confirms per batch (``publish``) only failures are
        told one by one: ``acks_confirmed`` is then the acks sent minus those
        failed and minus everything the link still holds unconfirmed.
        """
        stats = dict(self.stats)
        link = self._link
        if link is not None and getattr(link, "publish", None) is not None:
            unsettled = getattr(link, "unconfirmed", 0)
            stats["acks_confirmed"] = max(0, stats["acks_sent"] - stats["acks_failed"] - unsettled)
        return stats

    async def handle_outbound_message(self, message: TransportUserMessage) -> None:
        """Count ``message`` as sent to the outside world and, if configured, ack it."""
        self.stats["outbound_received"] += 1
        if not self.config.auto_ack or self._link is None:
            return
        ack = self._ack_template.trusted_copy(
            event_id=f"ack-{message.message_id}",
            user_message_id=message.message_id,
            sent_message_id=message.message_id,
            timestamp=utcnow(),
            helper_metadata={},
            routing_metadata={},
            transport_metadata=dict(message.transport_metadata),
        )
        publish = getattr(self._link, "publish", None)
        if publish is not None:  # confirmed per batch: only failures are told
            await publish("event", ack, self._ack_unsent)
            self.stats["acks_sent"] += 1
            return
        future = await self._link.send("event", ack)
        self.stats["acks_sent"] += 1
        future.add_done_callback(self._ack_confirmed)

    def _ack_confirmed(self, future: asyncio.Future[Any]) -> None:
        key = "acks_failed" if future.cancelled() or future.exception() is not None else "acks_confirmed"
        self.stats[key] += 1

    def _ack_unsent(self, direction: Direction, message: Message, error: BaseException) -> None:
        self.stats["acks_failed"] += 1


# -- the sink application -------------------------------------------------------------


class SinkApplicationConfig(EndpointConfig):
    """Config of ``SinkApplication``.

    Attributes:
        reply: reply to every message (so outbound messages and acks flow back).
        reply_content: the text of those replies.
        latency_samples: size of the latency reservoir.
    """

    reply: bool = False
    reply_content: str = "ok"
    latency_samples: int = Field(20_000, ge=1)


class SinkApplication(ApplicationActor):
    """Counts messages by id, keeps latencies, optionally replies (see the module docstring)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = SinkApplicationConfig

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self.ids = IdCounter()
        self.latency = LatencyReservoir(self.config.latency_samples)
        self.ack_latency = LatencyReservoir(self.config.latency_samples)
        self.acks = 0
        self.ack_ids = IdCounter()  # by the acked reply's id: an ack that arrives twice counts once
        self.other_events = 0
        self.replies = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._arrived = asyncio.Event()

    async def consume_user_message(self, message: TransportUserMessage) -> None:
        """Count ``message`` by id, note its latency, and reply if configured."""
        now = time.time()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        if not self.ids.add(message.message_id):
            return
        sent_at = message.transport_metadata.get(SENT_AT)
        if isinstance(sent_at, float):
            self.latency.add(now - sent_at)
        if self.config.reply:
            await self.reply_to(message, self.config.reply_content)
            self.replies += 1
        self._arrived.set()

    async def consume_ack(self, event: TransportEvent) -> None:
        """Count an ack of one of this application's replies; note the inbound-to-ack latency."""
        self.acks += 1
        self.ack_ids.add(event.user_message_id)
        now = time.time()
        self.last_at = now
        sent_at = event.transport_metadata.get(SENT_AT)
        if isinstance(sent_at, float):
            self.ack_latency.add(now - sent_at)
        self._arrived.set()

    async def consume_nack(self, event: TransportEvent) -> None:
        """Count a nack (the load transport never sends one)."""
        self.other_events += 1

    async def consume_delivery_report(self, event: TransportEvent) -> None:
        """Count a delivery report (the load transport never sends one)."""
        self.other_events += 1

    async def results(self) -> dict[str, Any]:
        """Counts (``unique``, ``duplicates``, ``per_prefix``, ``acks``, ``replies``), latencies, arrival times.

        ``acks`` counts every ack; ``acks_unique`` the distinct replies acked and
        ``ack_duplicates`` the acks of a reply already acked.
        """
        return {
            "unique": self.ids.unique,
            "duplicates": self.ids.duplicates,
            "per_prefix": self.ids.per_prefix(),
            "acks": self.acks,
            "acks_unique": self.ack_ids.unique,
            "ack_duplicates": self.ack_ids.duplicates,
            "other_events": self.other_events,
            "replies": self.replies,
            "latency_ms": self.latency.summary(),
            "ack_latency_ms": self.ack_latency.summary(),
            "first_at": self.first_at,
            "last_at": self.last_at,
        }

    async def configure(self, reply: bool) -> None:
        """Switch replying on or off (between benchmark runs)."""
        self.config = self.config.model_copy(update={"reply": reply})

    async def reset(self) -> None:
        """Forget every count and latency (between benchmark runs)."""
        self.ids.clear()
        self.latency.clear()
        self.ack_latency.clear()
        self.ack_ids.clear()
        self.acks = self.other_events = self.replies = 0
        self.first_at = self.last_at = None

    async def wait_for(self, unique: int, acks: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """Wait (bounded) until ``unique`` distinct messages and ``acks`` distinct acks arrived; return ``results``."""
        deadline = time.monotonic() + timeout
        while self.ids.unique < unique or self.ack_ids.unique < acks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))
        return await self.results()
