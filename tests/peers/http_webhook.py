"""An aiohttp webhook peer for the HTTP transport tests: records POSTs, can fail on purpose."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


class WebhookPeer:
    """A webhook server on 127.0.0.1 that records the JSON bodies POSTed to ``/hook``.

    ``fail_next`` answers that many requests with ``fail_status``; ``expect_auth``
    makes it answer 401 to requests without that ``Authorization`` header.
    """

    def __init__(self, port: int, expect_auth: str | None = None) -> None:
        self.port = port
        self.expect_auth = expect_auth
        self.received: list[dict[str, Any]] = []
        self.requests = 0
        self.fail_next = 0
        self.fail_status = 500
        self.reply_id_prefix = "peer-"
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        """The webhook URL."""
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        """Listen on the port (again, after ``stop``)."""
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.expect_auth is not None and request.headers.get("Authorization") != self.expect_auth:
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": "failing on purpose"}, status=self.fail_status)
        body = json.loads(await request.text())
        self.received.append(body)
        self._arrived.set()
        return web.json_response({"message_id": f"{self.reply_id_prefix}{len(self.received)}"})
