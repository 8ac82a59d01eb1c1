"""XMPP transport (on slixmpp): chat messages in and out through one client account.

The transport logs in as ``jid`` and keeps the session up: a lost connection
is reconnected with backoff (each attempt bounded by ``backoff.connect_timeout``)
for as long as the transport runs; XEP-0199 pings detect a dead server.

Inbound: every chat or normal message with a body becomes a user message from
the sender's bare JID to this transport's bare JID (``to_addr`` of replies is
a bare JID; the sender's resource is kept in ``transport_metadata.xmpp``).

Outbound: the message is sent as a chat stanza whose id is the message's id,
asking for an XEP-0184 receipt; it is acked once handed to the stream
(``sent_message_id`` is the stanza id). A receipt from the peer becomes a
``delivered`` delivery report, an error bounced by the server (for example an
unknown user) a ``failed`` one. A message waits up to ``outbound_timeout``
seconds for the session to come back rather than fail, then is nacked.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, Literal

from pydantic import Field

from actors.endpoint import EndpointConfig, TransportActor
from actors.transports.common import BackoffConfig, BoundedMap, ConnectionSupervisor, Secret
from ray_dispatch.message import TransportUserMessage

log = logging.getLogger(__name__)


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
        outbound_timeout: seconds an outbound message waits for the session (default 30).
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
    outbound_timeout: float = Field(30.0, ge=0)
    transport_type: str = "xmpp"
    remember_sent: int = Field(100_000, ge=1)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)


class _Session:
    """One logged-in slixmpp client and the event set when it disconnects."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.gone = asyncio.Event()


class XmppTransport(TransportActor):
    """XMPP chat transport (see the module docstring)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = XmppTransportConfig
    TRANSPORT_TYPE: ClassVar[str] = "xmpp"

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._password = ""
        self._supervisor: ConnectionSupervisor[_Session] | None = None
        self._sent: BoundedMap[str, str] = BoundedMap(self.config.remember_sent)

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
        )
        await self._supervisor.start_and_wait()

    async def teardown_transport(self) -> None:
        """Log out and stop reconnecting."""
        if self._supervisor is not None:
            await self._supervisor.stop()

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
        mechanisms = client.plugin["feature_mechanisms"]
        mechanisms.unencrypted_plain = cfg.allow_unencrypted_auth
        mechanisms.unencrypted_scram = cfg.allow_unencrypted_auth
        session = _Session(client)
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def fail(reason: str) -> None:
            if not started.done():
                started.set_exception(ConnectionError(reason))

        async def on_session_start(_: Any) -> None:
            client.send_presence()
            if not started.done():
                started.set_result(None)

        client.add_event_handler("session_start", on_session_start)
        client.add_event_handler("failed_auth", lambda _: fail("authentication failed"))
        client.add_event_handler("connection_failed", lambda error: fail(f"connection failed: {error}"))

        def on_disconnected(_: Any) -> None:
            session.gone.set()
            fail("disconnected")

        client.add_event_handler("disconnected", on_disconnected)
        client.add_event_handler("message", self._on_message)
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

    async def _serve(self, session: _Session) -> None:
        await session.gone.wait()

    async def _disconnect(self, session: _Session) -> None:
        if not session.gone.is_set():
            try:
                await asyncio.wait_for(session.client.disconnect(wait=1.0), 3.0)
            except Exception as exc:
                log.debug("xmpp transport %r: disconnect failed: %s", self.endpoint_name, exc)
        _abort(session.client)

    # -- inbound ----------------------------------------------------------------------

    async def _on_message(self, stanza: Any) -> None:
        kind = stanza["type"]
        body = stanza["body"]
        if kind not in ("chat", "normal") or not body:
            return
        sender = stanza["from"]
        metadata = {"xmpp": {"resource": sender.resource, "type": kind, "id": stanza["id"] or None}}
        if stanza["thread"]:
            metadata["xmpp"]["thread"] = stanza["thread"]
        await self.publish_from_peer(
            from_addr=sender.bare,
            to_addr=self.bare_jid,
            content=body,
            transport_type=self.config.transport_type,
            transport_metadata=metadata,
        )

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
        """Send ``message`` as a chat stanza, waiting (bounded) for the session; ack, or nack if none came."""
        if not message.to_addr:
            await self.publish_nack(message.message_id, "xmpp messages need a to_addr (a JID)")
            return
        assert self._supervisor is not None
        if not await self._supervisor.wait_connected(self.config.outbound_timeout):
            self.counters["outbound_nacked"] += 1
            why = self._supervisor.last_error or "not connected"
            await self.publish_nack(
                message.message_id, f"no XMPP session within {self.config.outbound_timeout}s ({why})"
            )
            return
        session = self._supervisor.connection
        assert session is not None
        stanza = session.client.make_message(mto=message.to_addr, mbody=message.content or "", mtype="chat")
        stanza["id"] = message.message_id
        thread = message.transport_metadata.get("xmpp", {}).get("thread")
        if thread:
            stanza["thread"] = thread
        if self.config.request_receipts:
            stanza["request_receipt"] = True
        self._sent[message.message_id] = message.message_id
        stanza.send()
        self.counters["outbound_acked"] += 1
        await self.publish_ack(message.message_id, sent_message_id=message.message_id)


def _abort(client: Any) -> None:
    try:
        client.cancel_connection_attempt()
        client.abort()
    except Exception as exc:
        log.debug("xmpp: abort failed: %s", exc)
