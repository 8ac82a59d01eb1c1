"""A line-based TCP client for the telnet transport tests (a user at a terminal)."""

from __future__ import annotations

import asyncio
import contextlib


class LineClient:
    """One user connected to a telnet transport on 127.0.0.1."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> LineClient:
        """Open a connection to 127.0.0.1:``port``."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        return cls(reader, writer)

    @property
    def address(self) -> str:
        """This end's ``host:port``, as the transport sees it."""
        host, port = self.writer.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    async def send(self, line: str | bytes) -> None:
        """Send one line (CRLF-terminated)."""
        data = line if isinstance(line, bytes) else line.encode()
        self.writer.write(data + b"\r\n")
        await self.writer.drain()

    async def read_line(self, timeout: float = 5.0) -> str:
        """Read one line (bounded); ``""`` at end of stream."""
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        return raw.decode().rstrip("\r\n")

    async def read_exactly(self, text: str, timeout: float = 5.0) -> str:
        """Read ``len(text)`` bytes (bounded), e.g. a prompt without a newline."""
        raw = await asyncio.wait_for(self.reader.readexactly(len(text.encode())), timeout)
        return raw.decode()

    async def close(self) -> None:
        """Hang up."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)
