"""One SMPP 3.4 ESME session over asyncio streams: bind, requests, keep-alive, and nothing answered for us.

``SmppSession.open`` connects and binds; a refused bind raises ``BindRefused``
with the SMSC's own command_status. Requests (``request``) wait for their
response by sequence number. The SMSC's enquire_link and unbind are answered
here; every deliver_sm goes to the owner's ``on_deliver_sm`` callback, which
answers it with ``respond`` when (and how) it chooses — the session never
acknowledges a message by itself. An enquire_link goes out every
``enquire_link_interval`` seconds; no answer within ``enquire_link_timeout``
ends the session, as does end of stream or a socket error. ``wait_closed``
returns why the session ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable

from actors.connection import PeerRefused
from actors.transports.smpp_pdu import (
    ENQUIRE_LINK,
    ESME_RINVCMDID,
    GENERIC_NACK,
    HEADER,
    PERMANENT_BIND_REFUSALS,
    RESPONSE_BIT,
    UNBIND,
    BindRequest,
    Pdu,
    PduError,
    describe_status,
    parse_header,
)

log = logging.getLogger(__name__)


class BindRefused(PeerRefused):
    """The SMSC answered the bind with a non-zero command_status (kept as ``status``, and as ``code``)."""

    def __init__(self, command: str, status: int) -> None:
        super().__init__(f"the SMSC refused {command}: {describe_status(status)}", status)
        self.status = status
        self.permanent = status in PERMANENT_BIND_REFUSALS


class SessionLost(ConnectionError):
    """The session ended (by the SMSC, the network or a missed enquire_link) before an answer came."""


DeliverSmHandler = Callable[["SmppSession", Pdu], None]


class SmppSession:
    """A bound ESME session (see the module docstring); build it with ``open``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_deliver_sm: DeliverSmHandler,
        enquire_link_interval: float,
        enquire_link_timeout: float,
        name: str,
    ) -> None:
        self.name = name
        self._reader = reader
        self._writer = writer
        self._on_deliver_sm = on_deliver_sm
        self._enquire_link_interval = enquire_link_interval
        self._enquire_link_timeout = enquire_link_timeout
        self._sequences = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Pdu]] = {}
        self._closed = asyncio.Event()
        self.closed_reason: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        bind_type: str,
        bind: BindRequest,
        *,
        on_deliver_sm: DeliverSmHandler,
        enquire_link_interval: float = 30.0,
        enquire_link_timeout: float = 10.0,
        bind_timeout: float = 10.0,
    ) -> SmppSession:
        """Connect to ``host:port`` and send ``bind`` as ``bind_type`` (``TX``, ``RX`` or ``TRX``).

        Raises:
            BindRefused: the SMSC answered the bind with an error status.
            OSError: the connection could not be made.
            TimeoutError: no bind response within ``bind_timeout`` seconds.
            SessionLost: the SMSC closed the connection before answering.
        """
        command_id, body = bind.encode(bind_type)
        reader, writer = await asyncio.open_connection(host, port)
        name = f"{bind_type} {bind.system_id}@{host}:{port}"
        session = cls(reader, writer, on_deliver_sm, enquire_link_interval, enquire_link_timeout, name)
        session._tasks.append(asyncio.get_running_loop().create_task(session._read_loop(), name=f"smpp read {name}"))
        try:
            response = await session.request(command_id, body, bind_timeout)
            if response.command_status != 0:
                raise BindRefused(Pdu(command_id, 0, 0).name, response.command_status)
        except BaseException as exc:
            session.close(f"bind failed: {exc}")
            await session.wait_closed()
            raise
        session._tasks.append(
            asyncio.get_running_loop().create_task(session._keep_alive(), name=f"smpp enquire_link {name}")
        )
        return session

    @property
    def is_open(self) -> bool:
        """Whether the session is still up."""
        return not self._closed.is_set()

    async def request(self, command_id: int, body: bytes, timeout: float) -> Pdu:
        """Send a request PDU and return its response (a generic_nack counts as one).

        Raises:
            SessionLost: the session is closed, or closes before the response comes.
            TimeoutError: no response within ``timeout`` seconds (the session stays up).
        """
        if not self.is_open:
            raise SessionLost(f"smpp session {self.name} is closed: {self.closed_reason}")
        sequence = next(self._sequences)
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = future
        try:
            self._writer.write(Pdu(command_id, 0, sequence, body).encode())
            return await asyncio.wait_for(self._drain_then(future), timeout)
        finally:
            self._pending.pop(sequence, None)

    async def _drain_then(self, future: asyncio.Future[Pdu]) -> Pdu:
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            self.close(f"writing failed: {exc}")
        return await future

    def respond(self, request: Pdu, status: int, body: bytes = b"") -> bool:
        """Answer ``request`` with ``status``; return whether the session was still open to send it."""
        if not self.is_open:
            return False
        self._writer.write(Pdu(request.command_id | RESPONSE_BIT, status, request.sequence_number, body).encode())
        return True

    async def unbind(self, timeout: float = 2.0) -> None:
        """Unbind politely (bounded), then close the connection."""
        with contextlib.suppress(SessionLost, TimeoutError, OSError):
            await self.request(UNBIND, b"", timeout)
        self.close("unbound by us")
        await self.wait_closed()

    def close(self, reason: str) -> None:
        """End the session now (idempotent): outstanding requests fail with ``SessionLost(reason)``."""
        if self._closed.is_set():
            return
        self.closed_reason = reason
        self._closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(SessionLost(f"smpp session {self.name} ended: {reason}"))
        self._pending.clear()
        self._writer.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    async def wait_closed(self) -> str:
        """Wait until the session has ended; return why."""
        await self._closed.wait()
        await asyncio.gather(*(t for t in self._tasks if t is not asyncio.current_task()), return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        return self.closed_reason or "closed"

    async def _read_loop(self) -> None:
        try:
            while True:
                length, command_id, status, sequence = parse_header(await self._reader.readexactly(HEADER.size))
                pdu = Pdu(command_id, status, sequence, await self._reader.readexactly(length - HEADER.size))
                self._on_pdu(pdu)
        except asyncio.IncompleteReadError:
            self.close("the SMSC closed the connection")
        except (OSError, PduError) as exc:
            self.close(f"{type(exc).__name__}: {exc}")

    def _on_pdu(self, pdu: Pdu) -> None:
        if pdu.is_response:
            future = self._pending.pop(pdu.sequence_number, None)
            if future is not None and not future.done():
                future.set_result(pdu)
            elif pdu.command_id != GENERIC_NACK:
                log.debug("smpp session %s: unexpected %s (sequence %d)", self.name, pdu.name, pdu.sequence_number)
        elif pdu.command_id == ENQUIRE_LINK:
            self.respond(pdu, 0)
        elif pdu.command_id == UNBIND:
            self.respond(pdu, 0)
            self.close("the SMSC unbound")
        elif pdu.name == "deliver_sm":
            self._on_deliver_sm(self, pdu)
        else:
            self._writer.write(Pdu(GENERIC_NACK, ESME_RINVCMDID, pdu.sequence_number).encode())

    async def _keep_alive(self) -> None:
        while self.is_open:
            await asyncio.sleep(self._enquire_link_interval)
            try:
                await self.request(ENQUIRE_LINK, b"", self._enquire_link_timeout)
            except TimeoutError:
                self.close(f"no enquire_link_resp within {self._enquire_link_timeout}s")
                return
            except SessionLost:
                return
