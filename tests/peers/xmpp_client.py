"""A slixmpp user for the XMPP transport tests: logs in, records what it receives, sends chat."""

from __future__ import annotations

import asyncio
from typing import Any

import slixmpp


class XmppPeer:
    """A person chatting with the transport, over plaintext loopback XMPP."""

    def __init__(self, jid: str, password: str, port: int, *, send_receipts: bool = True) -> None:
        self.client = slixmpp.ClientXMPP(f"{jid}/peer", password)
        self.client.enable_plaintext = True
        self.client.enable_starttls = False
        self.client.enable_direct_tls = False
        self.client.register_plugin("xep_0030")
        self.client.register_plugin("xep_0184", {"auto_ack": send_receipts})
        self.client.plugin["feature_mechanisms"].unencrypted_plain = True
        self.client.plugin["feature_mechanisms"].unencrypted_scram = True
        self.port = port
        self.received: list[Any] = []
        self._started: asyncio.Future[None] | None = None
        self.client.add_event_handler("session_start", self._on_start)
        self.client.add_event_handler("presence_available", self._on_presence)
        self.client.add_event_handler("message", self._on_message)

    async def _on_start(self, _: Any) -> None:
        self.client.send_presence()

    def _on_presence(self, stanza: Any) -> None:
        # The server echoes our own presence once it has it: from then on it delivers to us
        # (before that, with no offline storage, it would bounce a message sent to us).
        if stanza["from"] == self.client.boundjid and self._started is not None and not self._started.done():
            self._started.set_result(None)

    def _on_message(self, stanza: Any) -> None:
        if stanza["type"] in ("chat", "normal") and stanza["body"]:
            self.received.append(stanza)

    async def connect(self, timeout: float = 10.0) -> None:
        """Log in and wait (bounded) until the server has our presence."""
        self._started = asyncio.get_running_loop().create_future()
        self.client.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self._started, timeout)

    def send(self, to: str, body: str, mtype: str = "chat") -> None:
        """Send a message (a chat message unless ``mtype`` says otherwise: groupchat, headline, normal)."""
        self.client.send_message(mto=slixmpp.JID(to), mbody=body, mtype=mtype)  # type: ignore[arg-type]

    async def wait_for_bodies(self, count: int, timeout: float = 10.0) -> list[str]:
        """Wait (bounded) until ``count`` messages arrived; return their bodies."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received) < count and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return [str(m["body"]) for m in self.received]

    async def close(self) -> None:
        """Log out (bounded)."""
        try:
            await asyncio.wait_for(self.client.disconnect(wait=1.0), 3.0)
        except (TimeoutError, Exception):
            self.client.abort()
