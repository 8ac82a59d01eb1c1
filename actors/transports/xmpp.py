"""XMPP transport (on slixmpp): chat messages in and out through one client account.

The transport logs in as ``jid`` and keeps the session up: a lost connection
is reconnected with backoff (each attempt bounded by ``backoff.connect_timeout``)
for as long as the transport runs; XEP-0199 pings detect a dead server.

Inbound: every chat or normal message with a body becomes a user message from
the sender's bare JID to this transport's bare JID (``to_addr`` of replies is
a bare JID; the sender's resource is kept in ``transport_metadata.xmpp``).
Groupchat and headline messages, and messages with an empty body, are not
carried: each is counted in ``counters`` (``ignored_groupchat``,
``ignored_headline``, ``ignored_empty_body``) and the metric
``ray_dispatch_endpoint_messages_total`` (outcome ``ignored_<kind>``), and the
first of each kind is logged.
With stream management, the server's count of handled stanzas includes a
message only once the dispatcher confirmed it: if the transport dies first,
the server stores the message offline (and delivers it on the next login) or
bounces it to the sender, instead of taking it as delivered.

Outbound: the message is sent as a chat stanza whose id is the message's id,
asking for an XEP-0184 receipt. When the server offers stream management
(XEP-0198) the message is acked only once the server has confirmed the stanza;
if the connection drops first, it is sent again on the next session. Without
it, the message is acked once handed to the stream. ``sent_message_id`` is the
stanza id. A receipt from the peer becomes a ``delivered`` delivery report, an
error bounced by the server (for example an unknown user) a ``failed`` one.
At most ``window_size`` messages await a session or a confirmation at once; a
message waits up to ``outbound_timeout`` seconds in all (for room in the
window, a session and the server's confirmation) rather than fail, then is
nacked. Stopping the transport nacks what is still unconfirmed after 5 s.

A body with a character XML 1.0 cannot carry (U+0000-U+0008, U+000B, U+000C,
U+000E-U+001F, lone surrogates, U+FFFE, U+FFFF) is nacked at once naming the
character, or sent without such characters with ``xml_invalid_characters:
strip``: a server drops the whole stream on one. A message whose connection
dropped before the server confirmed it is sent again at most ``max_resends``
times, then nacked, so one message the server keeps refusing cannot cause a
reconnect storm.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections import deque
from typing import Any, ClassVar, Literal

from pydantic import Field

from actors import metrics
from actors.connection import PeerRefused
from actors.endpoint import EndpointConfig, TransportActor
from actors.transports.common import BackoffConfig, BoundedMap, ConnectionSupervisor, Secret, SendWindow
from ray_dispatch.core.errors import DeliveryError, InvalidMessage
from ray_dispatch.core.message import TransportUserMessage

log = logging.getLogger(__name__)

_REQUEST_ACK = '<r xmlns="urn:xmpp:sm:3"/>'
"""XEP-0198 ack request."""

XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""A character outside XML 1.0's ``Char`` production."""


def first_xml_invalid_character(text: str) -> tuple[int, str] | None:
    """The index and character of the first character XML 1.0 cannot carry in ``text``, or None."""
    found = XML_INVALID.search(text)
    return None if found is None else (found.start(), found.group())


class XmppTransportConfig(EndpointConfig):
    """Config of ``XmppTransport``.

    Attributes:
        jid: the account the transport logs in as (``bot@example.org``).
        password: where its password lives (``{env: NAME}`` or ``{file: PATH}``).
        host: the server to connect to (default: the JID's domain).
        port: the server's client port (default 5222).
        resource: the resource to bind (default ``ray_dispatch``).
        tls: ``starttls`` (default), ``direct`` (TLS from the first byte) or ``none``.
        allow_unencrypted_auth: allow SCRAM / PLAIN without TLS (loopback tests only; default false).
        request_receipts: ask for XEP-0184 receipts, reported as delivery reports (default true).
        ping_interval: seconds between XEP-0199 keep-alive pings (default 60).
        ping_timeout: a ping unanswered this long drops the connection (default 10).
        accept_subscriptions: accept presence subscription requests (default true).
        stream_management: use XEP-0198 when the server offers it, so an outbound message
            is acked only after the server confirmed it (default true).
        window_size: most outbound messages awaiting a session or the server's
            confirmation at once (default 100); more wait for room.
        outbound_timeout: seconds an outbound message may wait for room in the window,
            a session and the server's confirmation before it is nacked (default 30).
        xml_invalid_characters: ``refuse`` (default: nack a body with a character XML 1.0
            cannot carry, naming it) or ``strip`` (send the body without such characters).
        max_resends: how many times a message whose connection dropped before the server
            confirmed it is sent again before it is nacked (default 3).
        transport_type: the ``transport_type`` of inbound messages (default ``xmpp``).
        remember_sent: how many sent stanza ids to remember for receipts and errors (default 100000).
        backoff: delays between connection attempts.
    """

    jid: str = Field(..., pattern=r"^[^@/\s]+@[^@/\s]+$")
    password: Secret
    host: str | None = None
    port: int = Field(5222, ge=1, le=65535)
    resource: str = "ray_dispatch"
    tls: Literal["starttls", "direct", "none"] = "starttls"
    allow_unencrypted_auth: bool = False
    request_receipts: bool = True
    ping_interval: float = Field(60.0, gt=0)
    ping_timeout: float = Field(10.0, gt=0)
    accept_subscriptions: bool = True
    stream_management: bool = True
    window_size: int = Field(100, ge=1, le=10_000)
    outbound_timeout: float = Field(30.0, ge=0)
    xml_invalid_characters: Literal["refuse", "strip"] = "refuse"
    max_resends: int = Field(3, ge=0)
    transport_type: str = "xmpp"
    remember_sent: int = Field(100_000, ge=1)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)


class _InboundCount:
    """XEP-0198 counting of inbound stanzas in which a chat message counts as handled only once
    the dispatcher confirmed it (slixmpp's own count takes every stanza as handled on arrival).

    The ``h`` the server gets is the number of stanzas handled in a row from the start, so a
    message still waiting holds back the count of the ones after it; on a session that ends
    without acknowledging them, the server stores them offline or bounces them to the sender.
    """

    MAX_SEQ = 2**32

    def __init__(self, stream_management: Any) -> None:
        self._sm = stream_management
        self._arrived = 0
        self._handled = 0
        self._done: set[int] = set()
        self._messages: deque[int | None] = deque()

    def on_stanza(self, stanza: Any) -> Any:
        """slixmpp ``in`` filter: number the stanza; a message with a body waits for ``message_done``."""
        from slixmpp import Iq, Message, Presence

        is_message = isinstance(stanza, Message) and stanza.xml.find(f"{{{stanza.namespace}}}body") is not None
        if not self._sm.enabled_in:
            if is_message:
                self._messages.append(None)  # keeps the order with the message handler's calls
            return stanza
        if isinstance(stanza, (Message, Presence, Iq)):
            self._arrived += 1
            if is_message:
                self._messages.append(self._arrived)
            else:
                self._mark(self._arrived)
        return stanza

    def next_message(self) -> int | None:
        """The number of the message the handler is about to take (messages reach it in order)."""
        return self._messages.popleft() if self._messages else None

    def message_done(self, number: int | None) -> None:
        """The dispatcher confirmed message ``number`` (or it can never be): count it, and tell the server."""
        if number is not None and self._mark(number):
            self._sm.send_ack()

    def _mark(self, number: int) -> bool:
        self._done.add(number)
        before = self._handled
        while self._handled + 1 in self._done:
            self._handled += 1
            self._done.discard(self._handled)
        self._sm.handled = self._handled % self.MAX_SEQ
        return self._handled != before


class _Session:
    """One logged-in slixmpp client, the event set when it disconnects, and stanzas awaiting the server."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.gone = asyncio.Event()
        self.server_confirms = False  # XEP-0198 is on: the server acks each stanza
        self.inbound: _InboundCount | None = None
        self._unconfirmed: dict[str, asyncio.Future[None]] = {}

    def expect_confirmation(self, stanza_id: str) -> asyncio.Future[None] | None:
        """A future the server's XEP-0198 ack of ``stanza_id`` resolves; None when it will not ack."""
        if not self.server_confirms:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unconfirmed[stanza_id] = future
        return future

    def forget(self, stanza_id: str) -> None:
        """Stop waiting for ``stanza_id`` (confirmed, resent or given up)."""
        self._unconfirmed.pop(stanza_id, None)

    def on_stanza_acked(self, stanza: Any) -> None:
        """slixmpp handler: the server confirmed ``stanza``."""
        future = self._unconfirmed.pop(stanza["id"], None)
        if future is not None and not future.done():
            future.set_result(None)


class _AuthRefused(PeerRefused):
    """The server refused the login (the text has its SASL condition, e.g. ``not-authorized``, also its ``code``)."""

    def __init__(self, condition: str) -> None:
        super().__init__(f"the server refused the login: {condition}", condition)


class XmppTransport(TransportActor):
    """XMPP chat transport (see the module docstring)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = XmppTransportConfig
    TRANSPORT_TYPE: ClassVar[str] = "xmpp"

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._password = ""
        self._supervisor: ConnectionSupervisor[_Session] | None = None
        self._sent: BoundedMap[str, str] = BoundedMap(self.config.remember_sent)
        self._window = SendWindow(self.config.window_size)

    @property
    def bare_jid(self) -> str:
        """This transport's bare JID (the ``to_addr`` of inbound messages)."""
        return str(self.config.jid)

    # -- lifecycle ----------------------------------------------------------------

    async def setup_transport(self) -> None:
        """Read the password and start connecting (waits up to ``backoff.connect_timeout`` for the session).

        Raises:
            ConfigError: the password cannot be read.
        """
        self._password = self.config.password.reveal("password")
        self._supervisor = ConnectionSupervisor(
            f"xmpp transport {self.endpoint_name!r} ({self.config.jid})",
            self._connect,
            self._serve,
            self._disconnect,
            self.config.backoff,
            state=self.track_connection("xmpp"),
        )
        await self._supervisor.start_and_wait()

    async def teardown_transport(self) -> None:
        """Wait a few seconds for messages in the window, nack the rest, log out and stop reconnecting."""
        await self._window.close()
        if self._supervisor is not None:
            await self._supervisor.stop()

    def connection_state(self) -> list[dict[str, Any]]:
        """The session's state: ``connecting``, ``connected``, ``refused`` (the server's SASL condition,
        e.g. ``not-authorized``) or ``down`` (why), with ``since`` and ``attempts`` (see ``ConnectionState``).
        """
        return super().connection_state()

    def is_connected(self) -> bool:
        """Whether the session is up."""
        return self._supervisor is not None and self._supervisor.connected

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the session; return whether it is up."""
        return self._supervisor is not None and await self._supervisor.wait_connected(timeout)

    async def _connect(self) -> _Session:
        import slixmpp

        cfg = self.config
        client = slixmpp.ClientXMPP(f"{cfg.jid}/{cfg.resource}", self._password)
        client.enable_plaintext = cfg.tls == "none"
        client.enable_starttls = cfg.tls == "starttls"
        client.enable_direct_tls = cfg.tls == "direct"
        client.auto_authorize = cfg.accept_subscriptions
        client.auto_subscribe = cfg.accept_subscriptions
        client.register_plugin("xep_0030")
        client.register_plugin("xep_0184", {"auto_ack": True, "auto_request": False})
        client.register_plugin(
            "xep_0199", {"keepalive": True, "interval": cfg.ping_interval, "timeout": cfg.ping_timeout}
        )
        if cfg.stream_management:
            # slixmpp's own ack requests go out ahead of the stanza that triggers them, so it never
            # asks (a huge window); each send queues its own request after the stanza. No resumption:
            # each connection is a new client.
            client.register_plugin("xep_0198", {"window": 2**31, "allow_resume": False})
        mechanisms = client.plugin["feature_mechanisms"]
        mechanisms.unencrypted_plain = cfg.allow_unencrypted_auth
        mechanisms.unencrypted_scram = cfg.allow_unencrypted_auth
        session = _Session(client)
        if cfg.stream_management:
            sm = client.plugin["xep_0198"]
            session.inbound = _InboundCount(sm)
            client.del_filter("in", sm._handle_incoming)
            client.add_filter("in", session.inbound.on_stanza)
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def fail(reason: str, error: type[Exception] = ConnectionError) -> None:
            if not started.done():
                started.set_exception(error(reason))

        negotiated = {"session_start": False, "stream_negotiated": False}

        def mark(step: str) -> None:
            negotiated[step] = True
            if all(negotiated.values()) and not started.done():
                # Stream management (if offered) is negotiated after session_start. Nothing is sent
                # before it is settled, or slixmpp and the server would count stanzas differently.
                session.server_confirms = cfg.stream_management and bool(client.plugin["xep_0198"].enabled_out)
                client.send_presence()

        def on_presence(stanza: Any) -> None:
            # The server echoes our own presence once it has it (RFC 6121 4.2.2): from then on
            # messages to this JID reach us instead of bouncing.
            if stanza["from"] == client.boundjid and not started.done():
                started.set_result(None)

        client.add_event_handler("session_start", lambda _: mark("session_start"))
        client.add_event_handler("stream_negotiated", lambda _: mark("stream_negotiated"))
        client.add_event_handler("presence_available", on_presence)
        client.add_event_handler("stanza_acked", session.on_stanza_acked)
        client.add_event_handler("failed_auth", lambda stanza: fail(stanza["condition"], _AuthRefused))
        client.add_event_handler("connection_failed", lambda error: fail(f"connection failed: {error}"))

        def on_disconnected(_: Any) -> None:
            session.gone.set()
            fail("disconnected")

        client.add_event_handler("disconnected", on_disconnected)
        client.add_event_handler("message", functools.partial(self._on_message, session))
        client.add_event_handler("message_error", self._on_error)
        client.add_event_handler("receipt_received", self._on_receipt)
        if cfg.host:
            client.connect(cfg.host, cfg.port)
        else:
            client.connect(cfg.jid.split("@", 1)[1], cfg.port)
        try:
            await started
        except BaseException:
            _abort(client)
            raise
        return session

    async def _serve(self, session: _Session) -> str:
        await session.gone.wait()
        return "the connection dropped"

    async def _disconnect(self, session: _Session) -> None:
        if not session.gone.is_set():
            try:
                await asyncio.wait_for(session.client.disconnect(wait=1.0), 3.0)
            except Exception as exc:
                log.debug("xmpp transport %r: disconnect failed: %s", self.endpoint_name, exc)
        _abort(session.client)

    # -- inbound ----------------------------------------------------------------------

    async def _on_message(self, session: _Session, stanza: Any) -> None:
        number = session.inbound.next_message() if session.inbound is not None else None
        try:
            await self._publish_stanza(stanza)
        finally:
            if session.inbound is not None:
                session.inbound.message_done(number)

    async def _publish_stanza(self, stanza: Any) -> None:
        """Hand a chat message to the dispatcher and wait for its confirmation (invalid: a record)."""
        kind = stanza["type"]
        body = stanza["body"]
        if kind == "error":
            return  # a bounce: _on_error reports it
        if kind not in ("chat", "normal") or not body:
            self._ignore(kind if kind not in ("chat", "normal") else "empty_body", stanza["from"])
            return
        sender = stanza["from"]
        metadata = {"xmpp": {"resource": sender.resource, "type": kind, "id": stanza["id"] or None}}
        if stanza["thread"]:
            metadata["xmpp"]["thread"] = stanza["thread"]
        fields = {
            "from_addr": sender.bare,
            "to_addr": self.bare_jid,
            "content": body,
            "transport_type": self.config.transport_type,
            "transport_metadata": metadata,
        }
        try:
            await self.publish_message(wait=True, **fields)
        except (InvalidMessage, DeliveryError, RuntimeError):
            await self.publish_from_peer(**fields)  # kept as an undeliverable record

    def _ignore(self, kind: str, sender: Any) -> None:
        """Count an inbound message this transport does not carry; log the first of each kind."""
        key = f"ignored_{kind}"
        if not self.counters[key]:
            what = "messages with an empty body" if kind == "empty_body" else f"{kind} messages"
            log.warning(
                "xmpp transport %r: ignoring %s (first from %s); it carries chat and normal messages"
                " with a body only; counted in counters[%r], logged once",
                self.endpoint_name,
                what,
                sender,
                key,
            )
        self.counters[key] += 1
        metrics.record_endpoint_ignored(self.endpoint_name, self.ROLE, kind)

    async def _on_receipt(self, stanza: Any) -> None:
        user_message_id = self._sent.pop(stanza["receipt"])
        if user_message_id is None:
            return
        self.counters["receipts_delivered"] += 1
        await self.publish_delivery_report(
            user_message_id, "delivered", transport_metadata={"xmpp": {"from": str(stanza["from"])}}
        )

    async def _on_error(self, stanza: Any) -> None:
        user_message_id = self._sent.pop(stanza["id"])
        if user_message_id is None:
            return
        error = stanza["error"]
        reason = f"{error['type']}/{error['condition']}" + (f": {error['text']}" if error["text"] else "")
        self.counters["receipts_failed"] += 1
        await self.publish_delivery_report(user_message_id, "failed", transport_metadata={"xmpp": {"error": reason}})

    # -- outbound ---------------------------------------------------------------------

    async def handle_outbound_message(self, message: TransportUserMessage) -> None:
        """Send ``message`` as a chat stanza; returns once it has a place in the window.

        At most ``window_size`` messages await a session or the server's
        confirmation at once; past that this waits (bounded by
        ``outbound_timeout``). The ack or nack follows from a background task.
        """
        if not message.to_addr:
            await self._nack(message, "xmpp messages need a to_addr (a JID)")
            return
        invalid = first_xml_invalid_character(message.content or "")
        if invalid is not None and self.config.xml_invalid_characters == "strip":
            message.content = XML_INVALID.sub("", message.content or "")
            self.counters["outbound_stripped"] += 1
        elif invalid is not None:
            index, char = invalid
            await self._nack(
                message,
                f"content has U+{ord(char):04X} at index {index}, which XML 1.0 cannot carry "
                "(xml_invalid_characters: strip sends the text without such characters)",
            )
            return
        deadline = asyncio.get_running_loop().time() + self.config.outbound_timeout
        if not await self._window.reserve(self.config.outbound_timeout):
            await self._nack(message, f"no room in the send window within {self.config.outbound_timeout}s")
            return
        await self._window.start(self._deliver(message, deadline))

    async def _deliver(self, message: TransportUserMessage, deadline: float) -> None:
        """Send until the server has it (once, without stream management); then ack, or nack at ``deadline``."""
        assert self._supervisor is not None
        loop = asyncio.get_running_loop()
        resends = 0
        try:
            while True:
                if not await self._supervisor.wait_connected(max(0.0, deadline - loop.time())):
                    why = self._supervisor.last_error or "not connected"
                    await self._nack(message, f"no XMPP session within {self.config.outbound_timeout}s ({why})")
                    return
                session = self._supervisor.connection
                if session is None or session.gone.is_set():
                    await asyncio.sleep(0.05)  # dropped, and the supervisor has not noticed yet
                    continue
                confirmed = self._send_stanza(session, message)
                if confirmed is None or await _confirmed(session, message.message_id, confirmed, deadline):
                    break
                if not session.gone.is_set():
                    await self._nack(message, f"the server did not confirm it within {self.config.outbound_timeout}s")
                    return
                resends += 1
                if resends > self.config.max_resends:
                    await self._nack(
                        message,
                        f"the connection dropped {resends} times before the server confirmed it; not sent "
                        f"again (max_resends: {self.config.max_resends})",
                    )
                    return
                self.counters["outbound_resent"] += 1
                log.info("xmpp transport %r: resending %s (connection dropped)", self.endpoint_name, message.message_id)
        except asyncio.CancelledError:
            await self._nack(message, "the transport stopped before the server confirmed it")
            raise
        self.counters["outbound_acked"] += 1
        await self.publish_ack(message.message_id, sent_message_id=message.message_id)

    def _send_stanza(self, session: _Session, message: TransportUserMessage) -> asyncio.Future[None] | None:
        """Write ``message`` to the stream; return the future of the server's confirmation, if it gives one."""
        stanza = session.client.make_message(mto=message.to_addr, mbody=message.content or "", mtype="chat")
        stanza["id"] = message.message_id
        thread = message.transport_metadata.get("xmpp", {}).get("thread")
        if thread:
            stanza["thread"] = thread
        if self.config.request_receipts:
            stanza["request_receipt"] = True
        self._sent[message.message_id] = message.message_id
        confirmed = session.expect_confirmation(message.message_id)
        stanza.send()
        if confirmed is not None:
            session.client.send(_REQUEST_ACK)  # queued behind the stanza: the answer counts it
        return confirmed

    async def _nack(self, message: TransportUserMessage, reason: str) -> None:
        self.counters["outbound_nacked"] += 1
        await self.publish_nack(message.message_id, reason)


async def _confirmed(session: _Session, stanza_id: str, confirmed: asyncio.Future[None], deadline: float) -> bool:
    """Wait until the server confirms, the connection drops, or ``deadline``; return whether it confirmed."""
    gone: asyncio.Future[Any] = asyncio.ensure_future(session.gone.wait())
    waiting: set[asyncio.Future[Any]] = {confirmed, gone}
    try:
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        session.forget(stanza_id)
    return confirmed.done()


def _abort(client: Any) -> None:
    try:
        client.cancel_connection_attempt()
        client.abort()
    except Exception as exc:
        log.debug("xmpp: abort failed: %s", exc)
