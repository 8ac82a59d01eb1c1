"""Real Vumi artefacts, copied verbatim (only re-indented), each with where it came from.

Messages are JSON as Vumi and its users put it on the wire; configs are the
dispatcher configs of Vumi's own tests. They are facts to test against, not
code: a test checks that ray_dispatch reads them as Vumi does.
"""

from __future__ import annotations

from typing import Any

# rapidsms (rapidsms/backends/vumi/tests.py, VumiFormTest.valid_data): a telnet message as a
# Vumi HTTP relay posted it. Older producer: no provider, routing_metadata or address types.
TELNET_INBOUND: dict[str, Any] = {
    "transport_name": "transport",
    "in_reply_to": None,
    "group": None,
    "from_addr": "127.0.0.1:38634",
    "message_type": "user_message",
    "helper_metadata": {},
    "to_addr": "0.0.0.0:8005",
    "content": "ping",
    "message_version": "20110921",
    "transport_type": "telnet",
    "timestamp": "2012-07-06 14:08:20.845715",
    "transport_metadata": {},
    "session_event": "resume",
    "message_id": "56047985ceec40da908ca064f2fd59d3",
}

# rapidsms-vumi log parser docstring: "Processed outbound message for ..." as a Vumi 0.5
# dispatcher logged it (SMPP reply). No provider, no helper defaults beyond rapidsms's own.
SMPP_OUTBOUND_LOGGED: dict[str, Any] = {
    "transport_name": "almadar_smpp_transport_10010",
    "in_reply_to": "b5c53932-b13b-4453-8b99-728e66d23062",
    "group": None,
    "from_addr": "10010",
    "timestamp": "2014-04-15 18:04:32.161446",
    "to_addr": "218918510226",
    "content": "",
    "routing_metadata": {"endpoint_name": "default"},
    "message_version": "20110921",
    "transport_type": "sms",
    "helper_metadata": {"rapidsms": {"rapidsms_msg_id": "8b34b0971f9c412d84a2c58a9af5ed65"}},
    "transport_metadata": {},
    "session_event": None,
    "message_id": "8b34b0971f9c412d64a2c58a9af5ed65",
    "message_type": "user_message",
}

# Vumi Go (go/scripts tests, JSONFilterPipelineTestCase.INBOUND): a USSD session start with
# Go's routing_metadata; a full Vumi 0.5 message without the later address-type fields.
USSD_INBOUND_GO: dict[str, Any] = {
    "transport_name": "mtn_nigeria_ussd_transport",
    "transport_metadata": {},
    "group": None,
    "from_addr": "+27817030792",
    "timestamp": "2013-09-10 19:24:03.289543",
    "provider": "mtn_nigeria",
    "to_addr": "*120*8864*1203#",
    "content": "",
    "routing_metadata": {"go_hops": [], "endpoint_name": "default"},
    "message_version": "20110921",
    "transport_type": "ussd",
    "in_reply_to": None,
    "session_event": "new",
    "message_id": "af266289e40949388b5a8cacb4a2d13a",
    "message_type": "user_message",
}

# vumi2 (tests/test_messages.py, test_deserialise_all_fields): every field Vumi's message has.
SMS_ALL_FIELDS: dict[str, Any] = {
    "to_addr": "+27820001001",
    "from_addr": "12345",
    "transport_name": "test_sms",
    "transport_type": "sms",
    "message_version": "20110921",
    "message_type": "user_message",
    "timestamp": "2022-05-16 13:14:15.123456",
    "routing_metadata": {"test": "routing"},
    "helper_metadata": {"test": "helper"},
    "message_id": "7c9af210bc1b4718ae74a1aa026b4757",
    "in_reply_to": "c333975405074a89bf5d686ac64cc4d3",
    "provider": "Vodacom",
    "session_event": "new",
    "content": "test message",
    "transport_metadata": {"test": "transport"},
    "group": "test_group",
    "to_addr_type": "msisdn",
    "from_addr_type": "msisdn",
}

# RapidPro (handlers tests, "simulate Vumi calling back to us sending an ACK event"); the ids
# and timestamp were generated there, fixed here to values of the same shape.
USSD_ACK: dict[str, Any] = {
    "transport_name": "ussd_transport",
    "event_type": "ack",
    "event_id": "4d1a6e1e3f3b4c6c9c1d0f6b2a7e9d10",
    "sent_message_id": "8e0c1c3f5a2b4f7e9d6a1b2c3d4e5f60",
    "helper_metadata": {},
    "routing_metadata": {},
    "message_version": "20110921",
    "timestamp": "2016-01-05 10:11:12.345678",
    "transport_metadata": {},
    "user_message_id": "1515",
    "message_type": "event",
}

# The same ack as RapidPro's test really sent it: six.text_type(timezone.now()) gives an
# ISO time with an offset, which Vumi's parser cannot read (Vumi keeps the string).
USSD_ACK_AWARE_TIMESTAMP: dict[str, Any] = {**USSD_ACK, "timestamp": "2016-01-05 10:11:12.345678+00:00"}

# Vumi's own event tests (vumi/tests/test_message.py, TransportEventTest): a nack and a
# delivery report built with only the fields those tests give, as Vumi's to_json writes them.
_EVENT_ENVELOPE: dict[str, Any] = {
    "message_version": "20110921",
    "message_type": "event",
    "timestamp": "2014-01-01 00:00:00.000000",
    "routing_metadata": {},
    "helper_metadata": {},
    "event_id": "def",
    "user_message_id": "abc",
}
NACK_MINIMAL: dict[str, Any] = {**_EVENT_ENVELOPE, "event_type": "nack", "nack_reason": "unknown"}
DELIVERY_REPORT_MINIMAL: dict[str, Any] = {
    **_EVENT_ENVELOPE,
    "event_type": "delivery_report",
    "to_addr": "+27831234567",
    "from_addr": "12345",
    "delivery_status": "delivered",
}

VUMI_MESSAGES: dict[str, dict[str, Any]] = {
    "telnet_inbound": TELNET_INBOUND,
    "smpp_outbound_logged": SMPP_OUTBOUND_LOGGED,
    "ussd_inbound_go": USSD_INBOUND_GO,
    "sms_all_fields": SMS_ALL_FIELDS,
    "ussd_ack": USSD_ACK,
    "nack_minimal": NACK_MINIMAL,
    "delivery_report_minimal": DELIVERY_REPORT_MINIMAL,
}

# Keys Vumi's TransportMessage.process_fields / TransportUserMessage.process_fields give a message
# built in Python (vumi/message.py), e.g. by TransportUserMessage.send(to_addr, content).
VUMI_CONSTRUCTED_USER_MESSAGE_KEYS = frozenset(
    {
        "message_version",
        "message_type",
        "timestamp",
        "routing_metadata",
        "helper_metadata",
        "message_id",
        "in_reply_to",
        "provider",
        "session_event",
        "content",
        "transport_metadata",
        "group",
        "to_addr_type",
        "from_addr_type",
        # TransportUserMessage.send's own setdefaults and arguments
        "to_addr",
        "from_addr",
        "transport_name",
        "transport_type",
    }
)


def vumi_round_trip_keys(payload: dict[str, Any]) -> set[str]:
    """Keys Vumi's ``from_json``/``to_json`` round trip gives ``payload``: its own, plus what ``validate_fields`` adds.

    (vumi/message.py: ``from_json`` skips ``process_fields``; ``validate_fields`` setdefaults
    ``helper_metadata``, and ``group`` and ``provider`` on user messages.)
    """
    added = {"helper_metadata"}
    if payload.get("message_type") == "user_message":
        added |= {"group", "provider"}
    return set(payload) | added


# Dispatcher configs from Vumi's own router tests (vumi/dispatchers/tests/test_base.py), as given
# there. Two changes, noted per entry: the test-only RecordingMiddleware of TestBaseDispatchWorker
# is left out, and the configs the tests hand to a DummyDispatcher get their router_class.
VUMI_ROUTER_CONFIGS: dict[str, dict[str, Any]] = {
    "TestBaseDispatchWorker": {  # without its vumi.middleware.tests.utils.RecordingMiddleware pair
        "transport_names": ["transport1", "transport2", "transport3"],
        "exposed_names": ["app1", "app2", "app3"],
        "router_class": "vumi.dispatchers.base.SimpleDispatchRouter",
        "route_mappings": {"transport1": ["app1"], "transport2": ["app2"], "transport3": ["app1", "app3"]},
    },
    "TestToAddrRouter": {  # router_class added
        "router_class": "vumi.dispatchers.base.ToAddrRouter",
        "transport_names": ["transport1"],
        "exposed_names": ["app1", "app2"],
        "toaddr_mappings": {"app1": "to:.*:1", "app2": "to:app2"},
    },
    "TestTransportToTransportRouter": {
        "transport_names": ["transport1", "transport2"],
        "exposed_names": [],
        "router_class": "vumi.dispatchers.base.TransportToTransportRouter",
        "route_mappings": {"transport1": ["transport2"]},
    },
    "TestFromAddrMultiplexRouter": {  # router_class given in the test's config
        "transport_names": ["transport_1", "transport_2", "transport_3"],
        "exposed_names": ["muxed"],
        "router_class": "vumi.dispatchers.base.FromAddrMultiplexRouter",
        "fromaddr_mappings": {
            "thing1@muxme": "transport_1",
            "thing2@muxme": "transport_2",
            "thing3@muxme": "transport_3",
        },
    },
    "TestUserGroupingRouter": {
        "dispatcher_name": "user_group_dispatcher",
        "router_class": "vumi.dispatchers.base.UserGroupingRouter",
        "transport_names": ["transport1"],
        "exposed_names": ["app1", "app2"],
        "group_mappings": {"group1": "app1", "group2": "app2"},
        "transport_mappings": {"upstream1": "transport1"},
    },
    "TestContentKeywordRouter": {
        "dispatcher_name": "keyword_dispatcher",
        "router_class": "vumi.dispatchers.base.ContentKeywordRouter",
        "transport_names": ["transport1", "transport2"],
        "transport_mappings": {"shortcode1": "transport1", "shortcode2": "transport2"},
        "exposed_names": ["app1", "app2", "app3", "fallback_app"],
        "rules": [
            {"app": "app1", "keyword": "KEYWORD1", "to_addr": "8181", "prefix": "+256"},
            {"app": "app2", "keyword": "KEYWORD2"},
        ],
        "keyword_mappings": {"app2": "KEYWORD3", "app3": "KEYWORD1"},
        "fallback_application": "fallback_app",
        "expire_routing_memory": "3",
    },
    "TestRedirectOutboundRouterForSMPP": {
        "dispatcher_name": "redirect_outbound_dispatcher",
        "router_class": "vumi.dispatchers.base.RedirectOutboundRouter",
        "transport_names": ["smpp_rx_transport", "smpp_tx_transport"],
        "exposed_names": ["upstream"],
        "redirect_outbound": {"upstream": "smpp_tx_transport"},
        "redirect_inbound": {"smpp_tx_transport": "upstream", "smpp_rx_transport": "upstream"},
    },
    "TestRedirectOutboundRouter": {
        "dispatcher_name": "redirect_outbound_dispatcher",
        "router_class": "vumi.dispatchers.base.RedirectOutboundRouter",
        "transport_names": ["transport1", "transport2"],
        "exposed_names": ["app1", "app2"],
        "redirect_outbound": {"app1": "transport1", "app2": "transport2"},
        "redirect_inbound": {"transport1": "app1", "transport2": "app2"},
    },
    # vumi/dispatchers/tests/test_load_balancer.py, BaseLoadBalancingTestCase.setUp, with each
    # subclass's reply_affinity / rewrite_transport_names
    "TestLoadBalancingWithoutReplyAffinity": {
        "transport_names": ["transport_1", "transport_2"],
        "exposed_names": ["round_robin"],
        "router_class": "vumi.dispatchers.load_balancer.LoadBalancingRouter",
        "reply_affinity": False,
    },
    "TestLoadBalancingWithReplyAffinity": {
        "transport_names": ["transport_1", "transport_2"],
        "exposed_names": ["round_robin"],
        "router_class": "vumi.dispatchers.load_balancer.LoadBalancingRouter",
        "reply_affinity": True,
    },
    "TestLoadBalancingWithRewriteTransportNames": {
        "transport_names": ["transport_1", "transport_2"],
        "exposed_names": ["round_robin"],
        "router_class": "vumi.dispatchers.load_balancer.LoadBalancingRouter",
        "rewrite_transport_names": True,
    },
}
