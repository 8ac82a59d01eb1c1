"""SMPP transport against the test SMSC (tests/peers/smsc.py) in its own process (no Ray)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from peers.net import free_port
from peers.smsc import SmscPeer

from actors.transports.smpp import SmppTransport
from actors.transports.smpp_codec import encode_message, gsm_decode
from ray_dispatch.core.errors import ConfigError

from .smpp_support import FAST_BACKOFF, eventually_status, gsm_hex, outbound


async def test_mo_deliver_sm_becomes_an_inbound_message(link: Any, smsc: SmscPeer, make_transport: Any) -> None:
    await make_transport()
    await smsc.wait_for_receivers()
    status = await smsc.command(
        "mo", source_addr="27831112222", destination_addr="4321", short_message=gsm_hex("Hi € {ok} @home")
    )
    assert status == 0
    ucs2 = "Привет 👋"
    await smsc.command(
        "mo",
        source_addr="27831112222",
        destination_addr="4321",
        short_message=ucs2.encode("utf-16-be").hex(),
        data_coding=8,
    )
    await link.wait_until(lambda: len(link.inbound) == 2)
    first, second = link.inbound
    assert (first.from_addr, first.to_addr, first.content) == ("27831112222", "4321", "Hi € {ok} @home")
    assert first.transport_name == "smpp" and first.transport_type == "sms"
    assert first.transport_metadata["smpp"]["data_coding"] == 0
    assert second.content == ucs2


async def test_long_mo_is_reassembled_from_udh_parts(link: Any, smsc: SmscPeer, make_transport: Any) -> None:
    await make_transport()
    await smsc.wait_for_receivers()
    text = "".join(f"part{i:03d} " for i in range(40))  # 320 characters
    parts = encode_message(text, "gsm0338", "udh", reference=77).parts
    assert len(parts) == 3
    for part in reversed(parts):  # out of order on purpose
        await smsc.command(
            "mo", source_addr="2783", destination_addr="4321", short_message=part.short_message.hex(), esm_class=0x40
        )
    await link.wait_until(lambda: link.inbound)
    [message] = link.inbound
    assert message.content == text


async def test_outbound_is_submitted_acked_and_delivery_reported(
    link: Any, smsc: SmscPeer, make_transport: Any
) -> None:
    transport = await make_transport()
    await smsc.command("auto_receipt", stat="DELIVRD")
    message = outbound("Hello from the dispatcher")
    await transport.handle_outbound_message(message)
    [submit] = await smsc.wait_for_submits(1)
    assert submit["destination_addr"] == "27820001111" and submit["source_addr"] == "1234"
    assert submit["data_coding"] == 0 and submit["esm_class"] == 0 and submit["registered_delivery"] == 1
    assert gsm_decode(bytes.fromhex(submit["short_message"])) == "Hello from the dispatcher"
    await link.wait_until(lambda: len(link.events_about(message.message_id)) == 2)
    # The receipt follows the submit response at once, so the two events may be published in either order.
    [ack] = link.events_about(message.message_id, "ack")
    [report] = link.events_about(message.message_id, "delivery_report")
    assert ack.sent_message_id == submit["message_id"]
    assert report.delivery_status == "delivered"
    assert report.transport_metadata["smpp"]["smsc_message_id"] == submit["message_id"]


async def test_a_receipt_that_overtakes_the_submit_response_still_reports(
    link: Any, smsc: SmscPeer, make_transport: Any
) -> None:
    transport = await make_transport()
    await smsc.command("receipt_first")
    message = outbound("fast receipt")
    await transport.handle_outbound_message(message)
    await link.wait_until(lambda: len(link.events_about(message.message_id)) == 2)
    assert sorted(e.event_type for e in link.events_about(message.message_id)) == ["ack", "delivery_report"]
    [report] = link.events_about(message.message_id, "delivery_report")
    assert report.delivery_status == "delivered"


async def test_enquire_link_keeps_the_bind_alive(smsc: SmscPeer, make_transport: Any) -> None:
    await make_transport(enquire_link_interval=0.2)
    status = await eventually_status(smsc, lambda status: status["enquire_links"] >= 3)
    assert status["binds"] == 1  # still the first bind


async def test_receipt_text_without_tlvs_maps_to_a_failed_report(
    link: Any, smsc: SmscPeer, make_transport: Any
) -> None:
    transport = await make_transport()
    message = outbound("will not arrive")
    await transport.handle_outbound_message(message)
    [submit] = await smsc.wait_for_submits(1)
    await link.wait_until(lambda: link.events_about(message.message_id, "ack"))
    await smsc.command("receipt", message_id=submit["message_id"], stat="UNDELIV", tlv=False)
    await link.wait_until(lambda: link.events_about(message.message_id, "delivery_report"))
    [report] = link.events_about(message.message_id, "delivery_report")
    assert report.delivery_status == "failed"


async def test_long_ucs2_message_is_split_with_udh_and_reported_once(
    link: Any, smsc: SmscPeer, make_transport: Any
) -> None:
    transport = await make_transport()
    await smsc.command("auto_receipt", stat="DELIVRD")
    text = "Довге повідомлення українською мовою. " * 4  # 152 UCS-2 characters: 3 parts
    message = outbound(text)
    await transport.handle_outbound_message(message)
    submits = await smsc.wait_for_submits(3)
    assert len(submits) == 3
    assert {s["data_coding"] for s in submits} == {8} and {s["esm_class"] for s in submits} == {0x40}
    # within the window, parts may reach the SMSC in any order: the UDH numbers them
    by_number = sorted(submits, key=lambda s: bytes.fromhex(s["short_message"])[5])
    udhs = [bytes.fromhex(s["short_message"])[:6] for s in by_number]
    assert {u[:4] for u in udhs} == {udhs[0][:4]} and [u[4:] for u in udhs] == [b"\x03\x01", b"\x03\x02", b"\x03\x03"]
    joined = b"".join(bytes.fromhex(s["short_message"])[6:] for s in by_number).decode("utf-16-be")
    assert joined == text
    # each receipt is answered only after its report (if any) was confirmed: after three answers, all is in
    await eventually_status(smsc, lambda status: status["deliver_answers"].get("0x00", 0) == 3)
    [ack] = link.events_about(message.message_id, "ack")
    assert ack.sent_message_id == by_number[0]["message_id"]
    [report] = link.events_about(message.message_id, "delivery_report")  # one report for the three parts
    assert report.delivery_status == "delivered"


async def test_sar_mode_uses_tlvs(link: Any, smsc: SmscPeer, make_transport: Any) -> None:
    transport = await make_transport(long_messages="sar")
    await transport.handle_outbound_message(outbound("x" * 200))
    submits = await smsc.wait_for_submits(2)
    assert [s["esm_class"] for s in submits] == [0, 0]
    assert sorted(s["tlvs"][str(0x020F)] for s in submits) == ["01", "02"]
    assert {s["tlvs"][str(0x020E)] for s in submits} == {"02"}


async def test_refused_submit_is_nacked_naming_the_status(link: Any, smsc: SmscPeer, make_transport: Any) -> None:
    transport = await make_transport()
    await smsc.command("reject", count=1, status=0x0B)
    message = outbound("to a bad number")
    await transport.handle_outbound_message(message)
    await link.wait_until(lambda: link.events_about(message.message_id))
    [nack] = link.events_about(message.message_id)
    assert nack.event_type == "nack" and "ESME_RINVDSTADR" in nack.nack_reason
    bad_address = outbound("hello", to_addr="+2782" * 10)
    await transport.handle_outbound_message(bad_address)
    [nack] = link.events_about(bad_address.message_id)
    assert nack.event_type == "nack" and "to_addr" in nack.nack_reason
    too_long = outbound("y" * 2000)
    await transport.handle_outbound_message(too_long)
    [nack] = link.events_about(too_long.message_id)
    assert nack.event_type == "nack" and "max_parts" in nack.nack_reason


async def test_throttled_submits_back_off_and_then_succeed(link: Any, smsc: SmscPeer, make_transport: Any) -> None:
    transport = await make_transport(throttle_delay=0.2, throttle_max_delay=1.0)
    await smsc.command("throttle", count=2)
    message = outbound("patience")
    started = asyncio.get_running_loop().time()
    await transport.handle_outbound_message(message)
    await link.wait_until(lambda: link.events_about(message.message_id))
    elapsed = asyncio.get_running_loop().time() - started
    assert [e.event_type for e in link.events_about(message.message_id)] == ["ack"]
    submits = await smsc.command("submits")
    assert [s["status"] for s in submits] == ["throttled", "throttled", "accepted"]
    assert elapsed >= 0.2 + 0.4 - 0.05  # paused 0.2 s, then 0.4 s
    assert transport.counters["throttled"] == 2


async def test_tps_limit_spaces_submits(link: Any, smsc: SmscPeer, make_transport: Any) -> None:
    transport = await make_transport(tps=10)
    for i in range(6):
        await transport.handle_outbound_message(outbound(f"tps {i}"))
    submits = await smsc.wait_for_submits(6)
    # 6 submits at 10 per second span at least 0.5 s (the peer's clock adds jitter, not speed)
    assert submits[-1]["at"] - submits[0]["at"] >= 0.45


async def test_window_bounds_outstanding_submits(link: Any, smsc: SmscPeer, make_transport: Any) -> None:
    transport = await make_transport(window_size=2)
    await smsc.command("hold")
    messages = [outbound(f"windowed {i}") for i in range(5)]

    async def send_all() -> None:
        for message in messages:
            await transport.handle_outbound_message(message)

    sending = asyncio.create_task(send_all())
    try:
        assert len(await smsc.wait_for_submits(2)) == 2
        assert len(await smsc.wait_for_submits(3, timeout=0.5)) == 2  # the window holds the third back
        assert not sending.done()
        assert await smsc.command("release") == 2  # and no more holding: the rest go through the window
        await asyncio.wait_for(sending, 10)
        await link.wait_until(lambda: all(link.events_about(m.message_id, "ack") for m in messages))
        submits = await smsc.command("submits")
        assert sorted(gsm_decode(bytes.fromhex(s["short_message"])) for s in submits) == [m.content for m in messages]
    finally:
        sending.cancel()


async def test_transmitter_and_receiver_binds(link: Any, smsc: SmscPeer, make_transport: Any) -> None:
    transport = await make_transport(bind_mode="transmitter_receiver")
    await smsc.wait_for_receivers()
    status = await smsc.command("status")
    assert sorted(s["can_receive"] for s in status["sessions"]) == [False, True]
    await smsc.command("mo", source_addr="2782", destination_addr="4321", short_message=gsm_hex("via RX"))
    await link.wait_until(lambda: link.inbound)
    assert link.inbound[0].content == "via RX"
    message = link.inbound[0].reply("via TX")
    await transport.handle_outbound_message(message)
    [submit] = await smsc.wait_for_submits(1)
    tx_sessions = [s["session_id"] for s in status["sessions"] if not s["can_receive"]]
    assert submit["session_id"] in tx_sessions
    assert submit["destination_addr"] == "2782"
    await link.wait_until(lambda: link.events_about(message.message_id, "ack"))


async def test_smsc_going_away_and_back_loses_no_queued_message(link: Any, tmp_path: Path) -> None:
    smsc = SmscPeer(free_port(), free_port(), tmp_path / "smsc.log")
    smsc.start()
    transport = SmppTransport(
        "smpp", {"port": smsc.port, "system_id": "esme1", "backoff": FAST_BACKOFF, "outbound_timeout": 20}
    )
    transport.use_link(link)
    try:
        await transport.start()
        assert await transport.wait_bound(5)
        smsc.stop()
        await link.wait_until(lambda: not transport.is_bound(), timeout=10)
        messages = [outbound(f"queued {i}") for i in range(3)]
        for message in messages:  # each waits for the bind
            await transport.handle_outbound_message(message)
        smsc.start()
        assert await transport.wait_bound(10)
        await link.wait_until(lambda: all(link.events_about(m.message_id) for m in messages), timeout=15)
        assert all([e.event_type for e in link.events_about(m.message_id)] == ["ack"] for m in messages)
        submits = await smsc.command("submits")
        assert sorted(gsm_decode(bytes.fromhex(s["short_message"])) for s in submits) == [m.content for m in messages]
    finally:
        await transport.stop()
        smsc.stop()


async def test_a_password_longer_than_smpp_allows_is_a_config_error(link: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("RD_TEST_SMPP_PASSWORD", "123456789")
    transport = SmppTransport("smpp", {"system_id": "x", "password": {"env": "RD_TEST_SMPP_PASSWORD"}})
    transport.use_link(link)
    with pytest.raises(ConfigError, match=r"password.*at most 8 octets.*RD_TEST_SMPP_PASSWORD"):
        await transport.start()


async def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="system_id"):
        SmppTransport("smpp", {})
    with pytest.raises(ConfigError, match="bind_mode"):
        SmppTransport("smpp", {"system_id": "x", "bind_mode": "both"})
    with pytest.raises(ConfigError, match="window_size"):
        SmppTransport("smpp", {"system_id": "x", "window_size": 0})
