"""Telnet transport: a line-based TCP server where each connection is a user.

Every line a connection sends becomes an inbound message whose ``from_addr``
is the connection's ``host:port`` (or, with ``ask_name``, the name the user
typed first) and whose ``to_addr`` is ``to_addr`` (default: the endpoint
name). A connection opening and closing becomes a ``new`` / ``close`` session
message when ``session_events`` is on.

An outbound message goes to the newest connection whose address is its
``to_addr``; if there is none, the transport waits up to
``outbound_wait_timeout`` seconds for that user to (re)connect, then nacks.
A message written to the socket is acked (``sent_message_id`` is its own id);
an outbound message that closes the session also closes the connection.
If the server cannot listen (port busy), it retries with backoff while the
transport runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any, ClassVar

from pydantic import Field

from actors.endpoint import EndpointConfig, TransportActor
from actors.transports.common import BackoffConfig, ConnectionSupervisor
from ray_dispatch.core.message import TransportUserMessage

log = logging.getLogger(__name__)

_IAC_SEQUENCE = re.compile(rb"\xff\xff|\xff[\xfb-\xfe].|\xff\xfa.*?\xff\xf0|\xff[\xf0-\xf9]", re.DOTALL)


def strip_telnet_commands(data: bytes) -> bytes:
    """Remove telnet IAC negotiation sequences from a line."""
    return _IAC_SEQUENCE.sub(lambda match: b"\xff" if match.group() == b"\xff\xff" else b"", data)


class TelnetTransportConfig(EndpointConfig):
    """Config of ``TelnetTransport``.

    Attributes:
        host: address the server listens on (default ``127.0.0.1``).
        port: port the server listens on; 0 picks a free one (see ``TelnetTransport.port``).
        to_addr: the ``to_addr`` of inbound messages (default: the endpoint name).
        transport_type: the ``transport_type`` of inbound messages (default ``telnet``).
        ask_name: ask each connection for a name and use it as its address (default false).
        name_prompt: the question asked when ``ask_name`` is on.
        greeting: a line sent to each new connection (default none).
        session_events: send ``new`` / ``close`` session messages on connect / disconnect (default true).
        outbound_wait_timeout: seconds an outbound message waits for its user to connect (default 10).
        encoding: text encoding of lines (default ``utf-8``; undecodable bytes are replaced).
        max_line_bytes: longer lines are refused and the connection closed (default 4096).
        backoff: delays between attempts to listen.
    """

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    to_addr: str | None = None
    transport_type: str = "telnet"
    ask_name: bool = False
    name_prompt: str = "Your name? "
    greeting: str | None = None
    session_events: bool = True
    outbound_wait_timeout: float = Field(10.0, ge=0)
    encoding: str = "utf-8"
    max_line_bytes: int = Field(4096, ge=64)
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)


class _Connection:
    """One connected user."""

    def __init__(self, address: str, peer: str, writer: asyncio.StreamWriter) -> None:
        self.address = address
        self.peer = peer
        self.writer = writer


class TelnetTransport(TransportActor):
    """Line-based TCP server transport for demos (see the module docstring)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = TelnetTransportConfig
    TRANSPORT_TYPE: ClassVar[str] = "telnet"

    def __init__(self, endpoint_name: str, config: Any = None, **kw: Any) -> None:
        super().__init__(endpoint_name, config, **kw)
        self._connections: dict[str, _Connection] = {}
        self._changed = asyncio.Condition()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._supervisor: ConnectionSupervisor[asyncio.Server] | None = None
        self.port: int | None = None

    @property
    def service_addr(self) -> str:
        """The ``to_addr`` of inbound messages."""
        return str(self.config.to_addr or self.endpoint_name)

    def connected_addresses(self) -> list[str]:
        """Return the addresses of the users connected now."""
        return sorted(self._connections)

    # -- lifecycle ----------------------------------------------------------------

    async def setup_transport(self) -> None:
        """Start listening (retrying with backoff in the background if the port is busy)."""
        self._supervisor = ConnectionSupervisor(
            f"telnet transport {self.endpoint_name!r}",
            self._listen,
            self._serve,
            self._close_server,
            self.config.backoff,
            state=self.track_connection("server"),
            up_state="listening",
        )
        await self._supervisor.start_and_wait()

    async def teardown_transport(self) -> None:
        """Stop listening and close every connection."""
        if self._supervisor is not None:
            await self._supervisor.stop()
        for connection in list(self._connections.values()):
            connection.writer.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def wait_listening(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the server to listen; return whether it does."""
        return self._supervisor is not None and await self._supervisor.wait_connected(timeout)

    async def _listen(self) -> asyncio.Server:
        server = await asyncio.start_server(
            self._on_connect, self.config.host, self.config.port, limit=self.config.max_line_bytes
        )
        self.port = int(server.sockets[0].getsockname()[1])
        log.info("telnet transport %r listening on %s:%s", self.endpoint_name, self.config.host, self.port)
        return server

    async def _serve(self, server: asyncio.Server) -> None:
        await server.serve_forever()

    async def _close_server(self, server: asyncio.Server) -> None:
        server.close()

    # -- inbound ----------------------------------------------------------------------

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._handle_connection(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        connection: _Connection | None = None
        try:
            if self.config.greeting:
                await self._write_line(writer, self.config.greeting)
            address = peer
            if self.config.ask_name:
                writer.write(self.config.name_prompt.encode(self.config.encoding))
                await writer.drain()
                name = await self._read_line(reader)
                if not name:
                    return
                address = name
            connection = _Connection(address, peer, writer)
            await self._register(connection)
            if self.config.session_events:
                await self._publish_line(connection, None, "new")
            while (line := await self._read_line(reader)) is not None:
                await self._publish_line(connection, line, None)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.info("telnet transport %r: connection %s ended: %s", self.endpoint_name, peer, exc)
        finally:
            if connection is not None:
                await self._unregister(connection)
                if self.config.session_events:
                    await self._publish_line(connection, None, "close")
            writer.close()

    async def _read_line(self, reader: asyncio.StreamReader) -> str | None:
        raw = await reader.readline()
        if not raw:
            return None
        data = strip_telnet_commands(raw.rstrip(b"\r\n")).replace(b"\x00", b"")
        return data.decode(self.config.encoding, errors="replace").strip()

    async def _publish_line(self, connection: _Connection, content: str | None, session_event: str | None) -> None:
        await self.publish_from_peer(
            from_addr=connection.address,
            to_addr=self.service_addr,
            content=content,
            session_event=session_event,
            transport_type=self.config.transport_type,
            transport_metadata={"telnet": {"peer": connection.peer}},
        )

    async def _register(self, connection: _Connection) -> None:
        async with self._changed:
            old = self._connections.get(connection.address)
            self._connections[connection.address] = connection
            self._changed.notify_all()
        if old is not None:
            log.info(
                "telnet transport %r: %s reconnected; the older connection gets no more messages",
                self.endpoint_name,
                connection.address,
            )

    async def _unregister(self, connection: _Connection) -> None:
        async with self._changed:
            if self._connections.get(connection.address) is connection:
                del self._connections[connection.address]
            self._changed.notify_all()

    # -- outbound ---------------------------------------------------------------------

    async def handle_outbound_message(self, message: TransportUserMessage) -> None:
        """Write ``message`` to its user's connection, waiting (bounded) for it; ack, or nack if none came."""
        address = message.to_addr or ""
        if not address:
            await self.publish_nack(message.message_id, "telnet messages need a to_addr (a connection's address)")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.outbound_wait_timeout
        while True:
            connection = await self._wait_for_connection(address, deadline - loop.time())
            if connection is None:
                self.counters["outbound_nacked"] += 1
                await self.publish_nack(
                    message.message_id,
                    f"no telnet connection for to_addr {address!r} within {self.config.outbound_wait_timeout}s",
                )
                return
            try:
                await self._write_line(connection.writer, message.content or "")
            except ConnectionError:
                await self._unregister(connection)
                continue
            break
        if message.session_event == "close":
            connection.writer.close()
        self.counters["outbound_acked"] += 1
        await self.publish_ack(message.message_id, sent_message_id=message.message_id)

    async def _wait_for_connection(self, address: str, timeout: float) -> _Connection | None:
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: address in self._connections), max(0.0, timeout))
            return self._connections.get(address)

    async def _write_line(self, writer: asyncio.StreamWriter, text: str) -> None:
        if writer.is_closing():
            raise ConnectionResetError("connection is closing")
        writer.write(text.encode(self.config.encoding) + b"\r\n")
        await asyncio.wait_for(writer.drain(), 10.0)
