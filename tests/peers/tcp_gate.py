"""A loopback TCP relay that a test can shut and reopen, to cut one client's path to a server.

Restarting a server cuts every client at once and lets them race back; a gate cuts only the
client routed through it, and decides when it may reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib

from peers.net import free_port


class TcpGate:
    """Relay ``127.0.0.1:port`` to ``127.0.0.1:target_port`` while open.

    Shut: new connections are refused and the relayed ones are closed. Holding: what
    the server sends is kept back (the client hears nothing) until the gate shuts.
    As an async context manager it is open inside the block and shut after it.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._replies_flow = asyncio.Event()
        self._replies_flow.set()

    async def __aenter__(self) -> TcpGate:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shut()

    async def open(self) -> None:
        """Start accepting and relaying connections (no-op when already open)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    def hold_replies(self) -> None:
        """Keep back everything the server sends on relayed connections from now on."""
        self._replies_flow.clear()

    async def shut(self) -> None:
        """Stop accepting and close every relayed connection (what was held back is dropped)."""
        self._replies_flow.set()
        if self._server is not None:
            self._server.close()
            self._server = None
        pipes, self._pipes = self._pipes, set()
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        pipes = {
            asyncio.create_task(_copy(client_reader, server_writer)),
            asyncio.create_task(_copy(server_reader, client_writer, self._replies_flow)),
        }
        self._pipes |= pipes
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            self._pipes -= pipes
            for writer in (client_writer, server_writer):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flow: asyncio.Event | None = None) -> None:
    while data := await reader.read(65536):
        if flow is not None:
            await flow.wait()
        writer.write(data)
        await writer.drain()
