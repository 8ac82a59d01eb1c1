"""POSTs from a client that retries until it gets a 200: kill the HTTP transport twice mid-stream, none lost."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
import pytest
import ray

import ray_dispatch
from ray_dispatch.api import Deployment
from tests.peers.net import free_port
from tests.transports.ray_support import echo_deployment_config
from tests.waiting import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N = 1000


class RetryingClient:
    """POSTs N messages, ``concurrency`` at a time, each until it is answered 200 (bounded by ``deadline``)."""

    def __init__(self, url: str, concurrency: int = 20, deadline: float = 240.0) -> None:
        self.url = url
        self.concurrency = concurrency
        self.deadline = deadline
        self.accepted: set[int] = set()
        self.retries = 0

    def run_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        thread.start()
        return thread

    async def _run(self) -> None:
        todo = list(range(N))
        loop = asyncio.get_running_loop()
        end = loop.time() + self.deadline
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def worker() -> None:
                while todo and loop.time() < end:
                    index = todo.pop()
                    while loop.time() < end and not await self._post(session, index):
                        self.retries += 1
                        await asyncio.sleep(0.2)

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _post(self, session: aiohttp.ClientSession, index: int) -> bool:
        body = {"from_addr": f"+2784{index:07d}", "to_addr": "100", "content": f"http {index}"}
        try:
            async with session.post(self.url, json=body) as response:
                if response.status != 200:
                    return False
        except (aiohttp.ClientError, TimeoutError):
            return False
        self.accepted.add(index)
        return True


def test_killing_the_http_transport_twice_mid_stream_loses_no_message(ledger: Any, ledger_name: str) -> None:
    namespace = ray.get_runtime_context().namespace
    port = free_port()
    config = echo_deployment_config(
        "http", "actors.transports.http_api.HttpTransport", {"port": port, "inbound_timeout": 10}
    )
    config["endpoints"]["app"] = {
        "class": "actors.testing.LedgerApplication",
        "config": {"ledger": ledger_name, "namespace": namespace},
    }
    dep: Deployment = ray_dispatch.deploy(config, name="kill-http-transport", health_interval=0.5)
    try:
        client = RetryingClient(f"http://127.0.0.1:{port}/messages")
        thread = client.run_in_thread()
        for share in (0.3, 0.6):
            assert wait_for(lambda share=share: len(client.accepted) > N * share, 120), "the stream stalled"
            ray.kill(dep.endpoint("http"), no_restart=False)
        thread.join(timeout=300)
        assert len(client.accepted) == N, f"only {len(client.accepted)} of {N} answered 200"
        arrived = set(ray.get(ledger.by_user.remote()))
        lost = [index for index in client.accepted if f"+2784{index:07d}" not in arrived]
        assert lost == [], f"{len(lost)} messages answered 200 never reached the application"
        assert client.retries > 0  # the kills were felt
    finally:
        dep.shutdown()
