"""Vumi transport configs on our transports: an ``endpoints:`` entry naming Vumi's SMPP or Telnet transport.

``class: vumi.transports.smpp.SmppTransceiverTransport`` (or Vumi's old
``vumi.transports.smpp.SmppTransport``) with Vumi's config keys runs our
``SmppTransport``: each Vumi key is mapped onto ours, a key Vumi only needed
for its own plumbing (AMQP, Redis) is ignored with a warning, and any other
key is refused with its name and what to use instead. An inline
``password`` (Vumi configs have them) is accepted, never echoed, with a
warning pointing to ``{env: NAME}``. ``vumi.transports.telnet.TelnetServerTransport``
runs our ``TelnetTransport`` and ``vumi.transports.xmpp.XMPPTransport`` our
``XmppTransport`` the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import PrivateAttr, model_validator

from actors.endpoint import EndpointConfig
from actors.transports.common import Secret
from actors.transports.smpp import SmppTransport, SmppTransportConfig
from actors.transports.telnet import TelnetTransport, TelnetTransportConfig
from actors.transports.xmpp import XmppTransport, XmppTransportConfig

log = logging.getLogger(__name__)


class InlineSecret(Secret):
    """A secret written in the config itself (as Vumi configs do); its value is never shown."""

    _value: str = PrivateAttr("")

    INLINE: ClassVar[str] = "(inline in the config)"
    """What ``env`` says, so that the secret is valid wherever a ``Secret`` is."""

    @classmethod
    def holding(cls, value: str) -> InlineSecret:
        """Return a secret holding ``value``."""
        secret = cls(env=cls.INLINE)
        secret._value = value
        return secret

    def reveal(self, key: str) -> str:
        """Return the value."""
        return self._value

    def __repr__(self) -> str:
        return "InlineSecret('********')"


_VUMI_PROCESSORS = {
    "delivery_report_processor": "vumi.transports.smpp.processors.DeliveryReportProcessor",
    "deliver_short_message_processor": "vumi.transports.smpp.processors.DeliverShortMessageProcessor",
    "submit_short_message_processor": "vumi.transports.smpp.processors.SubmitShortMessageProcessor",
}
_SAME_NAME = (
    "system_id",
    "system_type",
    "service_type",
    "address_range",
    "dest_addr_ton",
    "dest_addr_npi",
    "source_addr_ton",
    "source_addr_npi",
    "registered_delivery",
    "throttle_delay",
    "host",
    "port",
    "bind_mode",
)
_IGNORED = (
    "transport_name",
    "amqp_prefetch_count",
    "worker_name",
    "publish_status",
    "redis_manager",
    "split_bind_prefix",
    "third_party_id_expiry",
    "smpp_enquire_link_interval",
    "deliver_sm_decoding_error",
)
"""Keys of Vumi's own plumbing (AMQP, Redis, its enquire_link timer): no counterpart here, ignored with a warning."""
_INSTEAD = {
    "codec_class": "our codec (coding: auto | gsm0338 | ucs2 | latin1)",
    "interface_version": "nothing: SMPP 3.4 is the only version",
    "delivery_report_processor_config": "nothing: receipts are parsed from TLVs or the standard receipt text",
    "deliver_short_message_processor_config": "default_alphabet for data_coding 0",
    "COUNTRY_CODE": "AddressPrefixProviderSettingMiddleware's normalize_msisdn",
}


def _endpoint_parts(description: str, form: str) -> tuple[dict[str, str], list[str]]:
    """Split a Twisted ``tcp:`` endpoint description into its named and positional arguments.

    Raises:
        ValueError: not a ``tcp:`` endpoint (``form`` says what is expected).
    """
    kind, _, rest = description.partition(":")
    if kind != "tcp":
        raise ValueError(f"twisted_endpoint {description!r}: only {form!r} is supported")
    named: dict[str, str] = {}
    positional: list[str] = []
    for part in rest.split(":"):
        name, sep, value = part.partition("=")
        if sep:
            named[name] = value
        else:
            positional.append(part)
    return named, positional


def _twisted_endpoint(description: str) -> dict[str, Any]:
    """Map a client endpoint ``tcp:host=H:port=P`` (or ``tcp:H:P``) to ``host`` / ``port``.

    Raises:
        ValueError: not a TCP client endpoint with a host and a port.
    """
    named, positional = _endpoint_parts(description, "tcp:host=...:port=...")
    host = named.get("host", positional[0] if positional else None)
    port = named.get("port", positional[1] if len(positional) > 1 else None)
    if not host or not port:
        raise ValueError(f"twisted_endpoint {description!r}: needs a host and a port (tcp:host=H:port=P)")
    return {"host": host, "port": port}


def _server_endpoint(description: str) -> dict[str, Any]:
    """Map a server endpoint ``tcp:port=P:interface=I`` (or ``tcp:P``) to ``port`` / ``host``.

    Raises:
        ValueError: not a TCP server endpoint with a port.
    """
    named, positional = _endpoint_parts(description, "tcp:port=...:interface=...")
    port = named.get("port", positional[0] if positional else None)
    if not port:
        raise ValueError(f"twisted_endpoint {description!r}: needs a port (tcp:port=P:interface=I)")
    return {"port": port, **({"host": named["interface"]} if "interface" in named else {})}


_SUBMIT_KEYS = (
    "send_long_messages",
    "send_multipart_udh",
    "send_multipart_sar",
    "multipart_handling",
    "multipart_sar_reference_rollover",
)


def _submit_config(config: dict[str, Any]) -> dict[str, Any]:
    """Map Vumi's ``submit_short_message_processor_config`` to ``long_messages``."""
    mapped: dict[str, Any] = {}
    for key, value in config.items():
        if key in ("send_long_messages", "multipart_handling") and value in (True, "message_payload"):
            raise ValueError(
                f"submit_short_message_processor_config.{key}: long messages in message_payload are not"
                " supported; use send_multipart_udh: true (or send_multipart_sar: true)"
            )
        if (key == "send_multipart_udh" and value) or (key == "multipart_handling" and value == "multipart_udh"):
            mapped["long_messages"] = "udh"
        elif (key == "send_multipart_sar" and value) or (key == "multipart_handling" and value == "multipart_sar"):
            mapped["long_messages"] = "sar"
        elif key not in _SUBMIT_KEYS:
            raise ValueError(f"submit_short_message_processor_config.{key}: not supported; use long_messages")
    return mapped


def _vumi_password(value: Any) -> Any:
    """A Vumi ``password``: inline text becomes an ``InlineSecret`` (with a warning); ``{env: ...}`` stays as it is."""
    if not isinstance(value, str):
        return value
    log.warning("password: given inline in a Vumi config; use password: {env: NAME} to keep it out of files")
    return InlineSecret.holding(value)


def vumi_smpp_config(vumi: dict[str, Any]) -> dict[str, Any]:
    """Map a Vumi SMPP transport config onto ``SmppTransportConfig``'s keys.

    Raises:
        ValueError: a key we do not support (named, with what to use instead), or a bad value.
    """
    ours: dict[str, Any] = {}
    for key, value in vumi.items():
        if key == "twisted_endpoint":
            ours.update(_twisted_endpoint(str(value)))
        elif key in _SAME_NAME:
            ours[key] = value
        elif key == "password":
            ours[key] = _vumi_password(value)
        elif key == "mt_tps":
            ours["tps"] = value or None
        elif key == "initial_reconnect_delay":
            ours.setdefault("backoff", {})["initial_delay"] = value
        elif key == "smpp_bind_timeout":
            ours.setdefault("backoff", {})["connect_timeout"] = value
        elif key == "submit_sm_expiry":
            ours["request_timeout"] = value
        elif key in _VUMI_PROCESSORS:
            if value != _VUMI_PROCESSORS[key]:
                raise ValueError(f"{key}: only Vumi's default {_VUMI_PROCESSORS[key]} is supported (got {value!r})")
        elif key == "submit_short_message_processor_config":
            ours.update(_submit_config(dict(value or {})))
        elif key in _IGNORED:
            log.warning("%s: a Vumi setting with no counterpart here; ignored", key)
        elif key in _INSTEAD and value:
            raise ValueError(f"{key}: not supported; use {_INSTEAD[key]}")
        elif key not in _INSTEAD:
            raise ValueError(
                f"{key}: not a key of Vumi's SMPP transport that ray_dispatch supports; use one of"
                f" twisted_endpoint, {', '.join(_SAME_NAME)}, password, mt_tps, initial_reconnect_delay,"
                " smpp_bind_timeout, submit_sm_expiry, submit_short_message_processor_config"
            )
    return ours


def reading_vumi_keys(base: type[EndpointConfig], mapping: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Return a subclass of config model ``base`` that reads a Vumi config through ``mapping`` first."""

    class VumiConfig(base):  # type: ignore[valid-type,misc]
        @model_validator(mode="before")
        @classmethod
        def _from_vumi(cls, data: Any) -> Any:
            return mapping(dict(data)) if isinstance(data, dict) else data

    VumiConfig.__name__ = VumiConfig.__qualname__ = f"Vumi{base.__name__}"
    VumiConfig.__doc__ = f"``{base.__name__}`` read from a Vumi transport config (see ``{mapping.__name__}``)."
    return VumiConfig


VumiSmppTransportConfig = reading_vumi_keys(SmppTransportConfig, vumi_smpp_config)


class VumiSmppTransport(SmppTransport):
    """Our ``SmppTransport`` configured with Vumi's keys (``vumi.transports.smpp.SmppTransceiverTransport``)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = VumiSmppTransportConfig


_TELNET_KEYS = {"telnet_host": "host", "telnet_port": "port", "to_addr": "to_addr", "transport_type": "transport_type"}


def vumi_telnet_config(vumi: dict[str, Any]) -> dict[str, Any]:
    """Map Vumi's ``TelnetServerTransport`` keys (``twisted_endpoint``, ``telnet_*``, ...) onto ours.

    Raises:
        ValueError: an unsupported key (named, with the supported ones), or a bad endpoint.
    """
    ours = _server_endpoint(str(vumi["twisted_endpoint"])) if "twisted_endpoint" in vumi else {}
    for key, value in vumi.items():
        if key in _TELNET_KEYS:
            ours[_TELNET_KEYS[key]] = value
        elif key in _IGNORED:
            log.warning("%s: a Vumi setting with no counterpart here; ignored", key)
        elif key != "twisted_endpoint":
            raise ValueError(
                f"{key}: not a key of Vumi's Telnet transport that ray_dispatch supports; use one of"
                f" twisted_endpoint, {', '.join(_TELNET_KEYS)}"
            )
    return ours


VumiTelnetTransportConfig = reading_vumi_keys(TelnetTransportConfig, vumi_telnet_config)


class VumiTelnetTransport(TelnetTransport):
    """Our ``TelnetTransport`` configured with Vumi's keys (``vumi.transports.telnet.TelnetServerTransport``)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = VumiTelnetTransportConfig


_XMPP_NO_COUNTERPART = ("debug", "status", "status_message", "presence_interval")
"""Vumi XMPP keys about traffic logging and presence broadcasts: accepted, ignored with a warning."""


def vumi_xmpp_config(vumi: dict[str, Any]) -> dict[str, Any]:
    """Map Vumi's ``XMPPTransport`` keys (``username``, ``password``, ``host``, ``port``, ...) onto ours.

    ``username`` is the account's JID (a ``/resource`` in it becomes ``resource``);
    ``host``, ``port`` and ``ping_interval`` keep their names; ``debug``, ``status``,
    ``status_message`` and ``presence_interval`` have no counterpart and are
    ignored with a warning. Our own ``XmppTransportConfig`` keys (``tls``,
    ``window_size``, ...) may be added to a Vumi config and are passed on.

    Raises:
        ValueError: an unsupported key (named, with the supported ones).
    """
    ours: dict[str, Any] = {}
    for key, value in vumi.items():
        if key == "username":
            jid, _, resource = str(value).partition("/")
            ours["jid"] = jid
            if resource:
                ours["resource"] = resource
        elif key == "password":
            ours[key] = _vumi_password(value)
        elif key in _XMPP_NO_COUNTERPART or key in _IGNORED:
            log.warning("%s: a Vumi setting with no counterpart here; ignored", key)
        elif key in XmppTransportConfig.model_fields:
            ours[key] = value
        else:
            ours_keys = ", ".join(XmppTransportConfig.model_fields)
            raise ValueError(
                f"{key}: not a key of Vumi's XMPP transport that ray_dispatch supports; use one of username,"
                f" password, host, port, ping_interval (or a key of ours: {ours_keys})"
            )
    return ours


VumiXmppTransportConfig = reading_vumi_keys(XmppTransportConfig, vumi_xmpp_config)


class VumiXmppTransport(XmppTransport):
    """Our ``XmppTransport`` configured with Vumi's keys (``vumi.transports.xmpp.XMPPTransport``)."""

    CONFIG_CLASS: ClassVar[type[EndpointConfig]] = VumiXmppTransportConfig
