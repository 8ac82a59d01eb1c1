"""SMPP transport against a test SMSC that misbehaves: refused binds, silence, drops, slow dispatchers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from peers.smsc import SmscPeer

from actors.transports.smpp import SmppTransport
from ray_dispatch.core.errors import ConfigError
from tests.transports.conftest import HoldingLink

from .smpp_support import eventually_status, gsm_hex, outbound

ESME_RTHROTTLED, ESME_RX_T_APPN, ESME_RX_P_APPN = 0x58, 0x64, 0x65


@pytest.fixture
def link() -> HoldingLink:
    return HoldingLink()


def mo(smsc: SmscPeer, text: str) -> asyncio.Task[Any]:
    """Have the SMSC send a deliver_sm; the task's result is the ESME's command_status."""
    return asyncio.create_task(
        smsc.command("mo", source_addr="27831112222", destination_addr="4321", short_message=gsm_hex(text))
    )


@pytest.mark.parametrize(
    ("status", "name"), [(0x0E, "ESME_RINVPASWD"), (0x0F, "ESME_RINVSYSID"), (0x53, "ESME_RINVSYSTYP")]
)
async def test_a_bind_refused_for_good_nacks_waiting_messages_naming_the_status(
    link: HoldingLink, smsc: SmscPeer, make_transport: Any, status: int, name: str
) -> None:
    await smsc.command("refuse_binds", status=status)
    transport = await make_transport(bound=False, outbound_timeout=60)
    message = outbound("never goes")
    await transport.handle_outbound_message(message)
    await link.wait_until(lambda: link.events_about(message.message_id), timeout=10)
    [nack] = link.events_about(message.message_id)
    assert nack.event_type == "nack"
    assert f"{name} (0x{status:08X})" in nack.nack_reason
    [state] = transport.connection_state()
    assert state["state"] == "refused" and name in state["reason"] and state["attempts"] == 1
    assert state["next_attempt"] - time.time() > 200  # permanent_refusal_delay: 300 s by default
    assert not transport.is_bound()
    with pytest.raises(AssertionError):  # the backoff's retries (every 0.5 s at most) do not bind again
        await eventually_status(smsc, lambda status: status["bind_refusals"] > 1, timeout=2)


async def test_a_temporary_bind_refusal_is_retried_and_named_in_a_nack(
    link: HoldingLink, smsc: SmscPeer, make_transport: Any
) -> None:
    await smsc.command("refuse_binds", status=0x0D)  # ESME_RBINDFAIL: maybe better later
    transport = await make_transport(bound=False, outbound_timeout=1.5)
    message = outbound("waits, then gives up")
    await transport.handle_outbound_message(message)
    await link.wait_until(lambda: link.events_about(message.message_id), timeout=10)
    [nack] = link.events_about(message.message_id)
    assert "ESME_RBINDFAIL (0x0000000D)" in nack.nack_reason and "not accepted within 1.5s" in nack.nack_reason
    await smsc.command("refuse_binds", status=0, count=0)
    assert await transport.wait_bound(10)
    assert transport.connection_state()[0]["state"] == "bound"
    assert (await smsc.command("status"))["bind_refusals"] >= 2


@pytest.mark.parametrize("misbehaviour", ["silence", "drop"])
async def test_a_session_that_goes_silent_or_drops_is_noticed_and_bound_again(
    link: HoldingLink, smsc: SmscPeer, make_transport: Any, misbehaviour: str
) -> None:
    transport = await make_transport(enquire_link_interval=0.2, enquire_link_timeout=0.5)
    link.release()
    assert await smsc.command(misbehaviour) == 1
    await eventually_status(smsc, lambda status: status["binds"] == 2 and status["sessions"])
    assert await transport.wait_bound(10)
    answer = mo(smsc, "after the rebind")
    await link.wait_until(lambda: link.inbound)
    link.release()
    assert await answer == 0
    assert link.inbound[0].content == "after the rebind"


async def test_deliver_sm_is_answered_only_after_the_dispatcher_confirmed_it(
    link: HoldingLink, smsc: SmscPeer, make_transport: Any
) -> None:
    await make_transport()
    answer = mo(smsc, "hold me")
    await link.wait_until(lambda: link.inbound)
    assert (await smsc.command("status"))["deliver_answers"] == {}  # nothing answered yet
    assert not answer.done()
    link.release()
    assert await answer == 0


async def test_a_deliver_sm_not_confirmed_in_time_is_answered_with_a_temporary_error(
    link: HoldingLink, smsc: SmscPeer, make_transport: Any
) -> None:
    transport = await make_transport(inbound_timeout=0.3)
    assert await mo(smsc, "too slow") == ESME_RX_T_APPN  # so the SMSC delivers it again
    assert transport.counters["inbound_deferred"] == 1


async def test_deliver_sm_beyond_the_inbound_window_are_throttled(
    link: HoldingLink, smsc: SmscPeer, make_transport: Any
) -> None:
    await make_transport(inbound_window=1)
    first = mo(smsc, "first")
    await link.wait_until(lambda: link.inbound)
    assert await mo(smsc, "second") == ESME_RTHROTTLED
    link.release()
    assert await first == 0
    assert [m.content for m in link.inbound] == ["first"]


@pytest.mark.parametrize(("given", "sent"), [(True, 1), (False, 0), (2, 2), (0x11, 0x11)])
async def test_registered_delivery_takes_smpp_values(
    link: HoldingLink, smsc: SmscPeer, make_transport: Any, given: Any, sent: int
) -> None:
    transport = await make_transport(registered_delivery=given)
    await transport.handle_outbound_message(outbound("receipts?"))
    [submit] = await smsc.wait_for_submits(1)
    assert submit["registered_delivery"] == sent


def test_registered_delivery_refuses_what_smpp_does_not_define() -> None:
    with pytest.raises(ConfigError, match=r"registered_delivery.*not an SMPP registered_delivery"):
        SmppTransport("smpp", {"system_id": "x", "registered_delivery": 3})


async def test_an_acked_message_without_a_receipt_is_reported_pending_after_receipt_timeout(
    link: HoldingLink, smsc: SmscPeer, make_transport: Any
) -> None:
    link.release()
    transport = await make_transport(receipt_timeout=0.3)
    message = outbound("the SMSC never says")
    await transport.handle_outbound_message(message)
    await link.wait_until(lambda: link.events_about(message.message_id, "delivery_report"), timeout=10)
    [report] = link.events_about(message.message_id, "delivery_report")
    assert report.delivery_status == "pending"
    assert report.transport_metadata["smpp"]["state"] == "NO_RECEIPT"
    assert [e.event_type for e in link.events_about(message.message_id)] == ["ack", "delivery_report"]


async def test_a_deliver_sm_that_cannot_be_read_is_refused_for_good(
    link: HoldingLink, smsc: SmscPeer, make_transport: Any
) -> None:
    transport = await make_transport()
    broken_udh = bytes((0x20, 0x00, 0x03)).hex()  # says 32 header octets, has 2
    status = await smsc.command(
        "mo", source_addr="2782", destination_addr="4321", short_message=broken_udh, esm_class=0x40
    )
    assert status == ESME_RX_P_APPN  # redelivering it cannot help
    assert link.items == [] and transport.counters["inbound_errors"] == 1
