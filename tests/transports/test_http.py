"""HTTP transport against real aiohttp peers on loopback (no Ray)."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from peers.http_webhook import WebhookPeer
from peers.net import free_port

from actors.transports.http_api import HttpTransport
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.core.message import TransportUserMessage
from tests.transports.conftest import HoldingLink

FAST_BACKOFF = {"initial_delay": 0.05, "max_delay": 0.2, "connect_timeout": 2.0}


async def start_transport(link: Any, **config: Any) -> HttpTransport:
    config.setdefault("backoff", FAST_BACKOFF)
    transport = HttpTransport("http_in", config)
    transport.use_link(link)
    await transport.start()
    return transport


@pytest.fixture
async def peer() -> AsyncIterator[WebhookPeer]:
    webhook = WebhookPeer(free_port())
    await webhook.start()
    try:
        yield webhook
    finally:
        await webhook.stop()


def outbound(to_addr: str = "+27820000001", content: str = "hello") -> TransportUserMessage:
    return TransportUserMessage(
        to_addr=to_addr, from_addr="1234", content=content, transport_name="http_in", transport_type="http"
    )


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_inbound_post_becomes_a_message_with_its_fields(link: Any) -> None:
    transport = await start_transport(link)
    try:
        status, body = await post(
            f"http://127.0.0.1:{transport.port}/messages",
            {"from_addr": "+27831112222", "to_addr": "12345", "content": "hi there", "helper_metadata": {"a": 1}},
        )
        assert status == 200
        [message] = link.inbound
        assert body == {"message_id": message.message_id}
        assert (message.from_addr, message.to_addr, message.content) == ("+27831112222", "12345", "hi there")
        assert message.transport_name == "http_in"
        assert message.transport_type == "http"
        assert message.helper_metadata == {"a": 1}
    finally:
        await transport.stop()


async def test_invalid_inbound_posts_are_refused_naming_the_field(link: Any) -> None:
    transport = await start_transport(link)
    url = f"http://127.0.0.1:{transport.port}/messages"
    try:
        status, body = await post(url, {"to_addr": "12345", "content": "no sender"})
        assert status == 400
        assert "from_addr" in body["error"]
        status, body = await post(url, {"from_addr": "1", "to_addr": "2", "session_event": "bogus"})
        assert status == 400
        assert "session_event" in body["error"]
        status, body = await post(url, ["not", "an", "object"])
        assert status == 400
        assert "JSON object" in body["error"]
        status, body = await post(url, {"from_addr": "1", "to_addr": "2", "transport_name": "other"})
        assert status == 400
        assert "transport_name" in body["error"]
        async with aiohttp.ClientSession() as session, session.post(url, data=b"{nope") as response:
            assert response.status == 400
            assert "not valid JSON" in (await response.json())["error"]
        # one bad message never stops the next good one
        status, _ = await post(url, {"from_addr": "1", "to_addr": "2", "content": "fine"})
        assert status == 200
        assert [m.content for m in link.inbound] == ["fine"]
    finally:
        await transport.stop()


async def test_inbound_token_auth_reads_the_secret_from_a_file(link: Any, tmp_path: Any) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("s3cret-token\n")
    transport = await start_transport(link, inbound_auth={"type": "token", "token": {"file": str(secret_file)}})
    url = f"http://127.0.0.1:{transport.port}/messages"
    message = {"from_addr": "1", "to_addr": "2", "content": "x"}
    try:
        status, _ = await post(url, message)
        assert status == 401
        status, _ = await post(url, message, {"Authorization": "Bearer wrong"})
        assert status == 401
        status, _ = await post(url, message, {"Authorization": "Bearer s3cret-token"})
        assert status == 200
        assert len(link.inbound) == 1
    finally:
        await transport.stop()


async def test_a_missing_secret_is_a_config_error_naming_the_key(link: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("RD_TEST_NO_SUCH_VAR", raising=False)
    transport = HttpTransport(
        "http_in", {"outbound_auth": {"type": "basic", "username": "u", "password": {"env": "RD_TEST_NO_SUCH_VAR"}}}
    )
    transport.use_link(link)
    with pytest.raises(ConfigError, match=r"outbound_auth\.password.*RD_TEST_NO_SUCH_VAR"):
        await transport.start()
    with pytest.raises(ConfigError, match="exactly one of 'env' or 'file'"):
        HttpTransport("http_in", {"inbound_auth": {"type": "token", "token": {}}})
    with pytest.raises(ConfigError, match="outbound_url"):
        HttpTransport("http_in", {"outbound_url": "ftp://example"})


async def test_outbound_reaches_the_webhook_with_basic_auth_and_is_acked(
    link: Any, peer: WebhookPeer, monkeypatch: Any
) -> None:
    monkeypatch.setenv("RD_TEST_WEBHOOK_PASSWORD", "pa55")
    peer.expect_auth = "Basic " + base64.b64encode(b"app:pa55").decode()
    transport = await start_transport(
        link,
        outbound_url=peer.url,
        outbound_auth={"type": "basic", "username": "app", "password": {"env": "RD_TEST_WEBHOOK_PASSWORD"}},
    )
    try:
        message = outbound(content="to the webhook")
        await transport.handle_outbound_message(message)
        [received] = peer.received
        assert received["message_id"] == message.message_id
        assert received["content"] == "to the webhook"
        assert received["to_addr"] == "+27820000001"
        [ack] = link.events_about(message.message_id)
        assert ack.event_type == "ack"
        assert ack.sent_message_id == "peer-1"
        assert ack.transport_name == "http_in"
    finally:
        await transport.stop()


async def test_webhook_rejection_is_a_nack_and_server_errors_are_retried_then_nacked(
    link: Any, peer: WebhookPeer
) -> None:
    transport = await start_transport(link, outbound_url=peer.url, outbound_attempts=3)
    try:
        peer.fail_next, peer.fail_status = 1, 422
        refused = outbound(content="refused")
        await transport.handle_outbound_message(refused)
        [nack] = link.events_about(refused.message_id)
        assert nack.event_type == "nack"
        assert "422" in nack.nack_reason
        assert peer.requests == 1  # a 4xx is not retried

        peer.fail_next, peer.fail_status = 2, 503
        flaky = outbound(content="flaky")
        await transport.handle_outbound_message(flaky)
        assert [e.event_type for e in link.events_about(flaky.message_id)] == ["ack"]
        assert [m["content"] for m in peer.received] == ["flaky"]

        peer.fail_next = 10
        doomed = outbound(content="doomed")
        await transport.handle_outbound_message(doomed)
        [nack] = link.events_about(doomed.message_id)
        assert nack.event_type == "nack"
        assert "3 attempt" in nack.nack_reason and "503" in nack.nack_reason
    finally:
        await transport.stop()


async def test_peer_events_become_events_about_the_right_message(link: Any, peer: WebhookPeer) -> None:
    transport = await start_transport(link, outbound_url=peer.url)
    events_url = f"http://127.0.0.1:{transport.port}/events"
    try:
        first, second = outbound(content="one"), outbound(content="two")
        await transport.handle_outbound_message(first)
        await transport.handle_outbound_message(second)
        status, _ = await post(
            events_url, {"event_type": "delivery_report", "sent_message_id": "peer-2", "delivery_status": "delivered"}
        )
        assert status == 200
        status, _ = await post(
            events_url,
            {"event_type": "delivery_report", "user_message_id": first.message_id, "delivery_status": "failed"},
        )
        assert status == 200
        assert [e.delivery_status for e in link.events_about(second.message_id, "delivery_report")] == ["delivered"]
        assert [e.delivery_status for e in link.events_about(first.message_id, "delivery_report")] == ["failed"]

        status, body = await post(
            events_url, {"event_type": "delivery_report", "sent_message_id": "peer-99", "delivery_status": "delivered"}
        )
        assert status == 400 and "sent_message_id" in body["error"]
        status, body = await post(events_url, {"event_type": "delivery_report", "user_message_id": first.message_id})
        assert status == 400 and "delivery_status" in body["error"]
    finally:
        await transport.stop()


async def test_webhook_down_and_back_loses_no_queued_message(link: Any) -> None:
    port = free_port()
    peer = WebhookPeer(port)  # not listening yet: the peer is away
    transport = await start_transport(
        link, outbound_url=peer.url, outbound_attempts=50, outbound_timeout=10.0, request_timeout=1.0
    )

    try:
        messages = [outbound(content=f"queued {i}") for i in range(3)]

        async def send_in_order() -> None:
            for message in messages:
                await transport.handle_outbound_message(message)

        sending = asyncio.create_task(send_in_order())
        await asyncio.sleep(0.5)
        assert not sending.done() and link.events == []  # waiting for the peer, not failing
        await peer.start()
        await asyncio.wait_for(sending, 10)
        assert [m["content"] for m in peer.received] == ["queued 0", "queued 1", "queued 2"]
        assert all([e.event_type for e in link.events_about(m.message_id)] == ["ack"] for m in messages)
        assert transport.counters["outbound_retries"] >= 1
    finally:
        await transport.stop()
        await peer.stop()


async def test_openapi_description_lists_the_endpoints(link: Any) -> None:
    transport = await start_transport(
        link, path_prefix="/sms", inbound_auth={"type": "token", "token": {"env": "HOME"}}
    )
    try:
        url = f"http://127.0.0.1:{transport.port}/openapi.json"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            doc = await response.json()
        assert doc["openapi"].startswith("3.")
        assert set(doc["paths"]) == {"/sms/messages", "/sms/events"}
        assert doc["components"]["securitySchemes"] == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        assert "from_addr" in doc["components"]["schemas"]["Message"]["required"]
    finally:
        await transport.stop()


async def test_busy_port_is_retried_until_it_frees_up(link: Any) -> None:
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    transport = HttpTransport("http_in", {"port": port, "backoff": {"initial_delay": 0.05, "connect_timeout": 0.3}})
    transport.use_link(link)
    try:
        await transport.start()
        assert not await transport.wait_listening(0.2)
        blocker.close()
        assert await transport.wait_listening(5)
        status, _ = await post(f"http://127.0.0.1:{port}/messages", {"from_addr": "1", "to_addr": "2", "content": "x"})
        assert status == 200
    finally:
        blocker.close()
        await transport.stop()


async def test_unknown_and_reserved_fields_are_refused_naming_them(link: Any) -> None:
    transport = await start_transport(link)
    base = f"http://127.0.0.1:{transport.port}"
    try:
        status, body = await post(f"{base}/messages", {"from_addr": "1", "to_addr": "2", "self": "x", "colour": 1})
        assert status == 400 and "unknown field(s) 'colour', 'self'" in body["error"]
        status, body = await post(f"{base}/messages", {"from_addr": "1", "to_addr": "2", "routing_metadata": {}})
        assert status == 400 and "'routing_metadata' are set by the transport" in body["error"]
        status, body = await post(f"{base}/events", {"event_type": "ack", "user_message_id": "m1", "self": 1})
        assert status == 400 and "unknown field(s) 'self'" in body["error"]
        assert link.items == []
    finally:
        await transport.stop()


async def test_an_oversized_body_gets_a_json_413_that_openapi_documents(link: Any) -> None:
    transport = await start_transport(link, max_body_bytes=1024)
    base = f"http://127.0.0.1:{transport.port}"
    try:
        status, body = await post(f"{base}/messages", {"from_addr": "1", "to_addr": "2", "content": "x" * 2000})
        assert status == 413 and "max_body_bytes (1024 bytes)" in body["error"]
        async with aiohttp.ClientSession() as session, session.get(f"{base}/openapi.json") as response:
            doc = await response.json()
        for path in ("/messages", "/events"):
            assert set(doc["paths"][path]["post"]["responses"]) >= {"200", "400", "413", "503"}
        assert link.items == []
    finally:
        await transport.stop()


async def test_a_post_is_answered_200_only_after_the_dispatcher_confirmed_it_else_503() -> None:
    link = HoldingLink()
    transport = await start_transport(link, inbound_timeout=0.5)
    url = f"http://127.0.0.1:{transport.port}/messages"
    try:
        answer = asyncio.create_task(post(url, {"from_addr": "1", "to_addr": "2", "content": "confirmed"}))
        await link.wait_until(lambda: link.inbound)
        assert not answer.done()
        link.release()
        status, body = await answer
        assert status == 200 and body == {"message_id": link.inbound[0].message_id}
        async with aiohttp.ClientSession() as session:
            message = {"from_addr": "1", "to_addr": "2", "content": "never confirmed"}
            async with session.post(url, json=message) as response:
                assert response.status == 503 and response.headers["Retry-After"] == "1"
                assert "not confirmed within 0.5s" in (await response.json())["error"]
    finally:
        link.release()
        await transport.stop()
