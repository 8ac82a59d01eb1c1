"""What a Vumi config names, and what ray_dispatch makes of it.

Vumi class paths resolve to ours (``vumi_alias``); a Vumi class we do not
provide is refused with one line that lists what we do provide
(``unavailable_vumi_class``); a Vumi endpoint-dispatcher config is refused
as such (``unsupported_vumi_config``); and Vumi's ``!include`` YAML tag is
read relative to the including file (``load_yaml``).

The core does not import ``routers`` or ``ray_dispatch.middleware`` (the
layers run the other way): the routers are listed by importing ``routers``
by name, as router classes are; the middleware table maps our names to
Vumi's modules, and a test keeps it equal to the package's exports.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ray_dispatch.core.errors import did_you_mean


def our_routers() -> list[str]:
    """The routers ``routers`` exports (Vumi's builtin routers), imported by name as router classes are."""
    return sorted(importlib.import_module("routers").__all__)


OUR_MIDDLEWARE: dict[str, str] = {
    "LoggingMiddleware": "logging",
    "TaggingMiddleware": "tagger",
    "AddressTranslationMiddleware": "address_translator",
    "StaticProviderSettingMiddleware": "provider_setter",
    "AddressPrefixProviderSettingMiddleware": "provider_setter",
    "SessionLengthMiddleware": "session_length",
    "StoringMiddleware": "message_storing",
}
"""Middleware ``ray_dispatch.middleware`` exports -> the Vumi module it comes from (``vumi.middleware.<module>``)."""

VUMI_TRANSPORTS: dict[str, str] = {
    "vumi.transports.smpp.SmppTransceiverTransport": "actors.transports.vumi.VumiSmppTransport",
    "vumi.transports.smpp.smpp_transport.SmppTransceiverTransport": "actors.transports.vumi.VumiSmppTransport",
    "vumi.transports.smpp.SmppTransport": "actors.transports.vumi.VumiSmppTransport",
    "vumi.transports.telnet.TelnetServerTransport": "actors.transports.vumi.VumiTelnetTransport",
    "vumi.transports.telnet.telnet.TelnetServerTransport": "actors.transports.vumi.VumiTelnetTransport",
    "vumi.transports.xmpp.XMPPTransport": "actors.transports.vumi.VumiXmppTransport",
    "vumi.transports.xmpp.xmpp.XMPPTransport": "actors.transports.vumi.VumiXmppTransport",
}
"""Vumi transport classes -> ours, configured with Vumi's keys (``actors/transports/vumi.py``)."""

_SPLIT_BINDS = ("SmppTransmitterTransport", "SmppReceiverTransport")

_VUMI_ROUTER_MODULES = ("vumi.dispatchers", "vumi.dispatchers.base", "vumi.dispatchers.load_balancer")
_VUMI_MIDDLEWARE_MODULES = frozenset({"vumi.middleware", *(f"vumi.middleware.{m}" for m in OUR_MIDDLEWARE.values())})
_ENDPOINT_DISPATCHERS = "vumi.dispatchers.endpoint_dispatchers"
_ENDPOINT_DISPATCHER_KEYS = ("routing_table", "receive_inbound_connectors", "receive_outbound_connectors")
_ENDPOINT_DISPATCHER_ADVICE = (
    "ray_dispatch does not support Vumi's endpoint dispatchers (a routing_table of connectors);"
    " use a BaseDispatchWorker config: router_class, transport_names, exposed_names"
)


def vumi_alias(path: str) -> str:
    """Map a Vumi class path to ours (``vumi.dispatchers.X`` -> ``routers.X``, ...); other paths unchanged."""
    if path in VUMI_TRANSPORTS:
        return VUMI_TRANSPORTS[path]
    module, _, name = path.rpartition(".")
    if module in _VUMI_ROUTER_MODULES and name in our_routers():
        return f"routers.{name}"
    if module in _VUMI_MIDDLEWARE_MODULES and name in OUR_MIDDLEWARE:
        return f"ray_dispatch.middleware.{name}"
    return path


def unavailable_vumi_class(path: str) -> str | None:
    """Say why Vumi class ``path`` cannot be used here, listing ours; None if it is not Vumi's or we provide it."""
    if not path.startswith("vumi.") or vumi_alias(path) != path:
        return None
    if path.startswith(_ENDPOINT_DISPATCHERS + "."):
        return f"Vumi's {path} is an endpoint dispatcher: {_ENDPOINT_DISPATCHER_ADVICE}"
    if path.startswith("vumi.dispatchers."):
        routers = our_routers()
        hint = did_you_mean(path.rpartition(".")[2], routers)
        return f"Vumi's {path} is not available in ray_dispatch; available routers: {', '.join(routers)}{hint}"
    if path.startswith("vumi.transports.smpp.") and path.rpartition(".")[2] in _SPLIT_BINDS:
        return (
            f"Vumi's {path} (one half of a split bind) is not available in ray_dispatch; use one endpoint with"
            " class vumi.transports.smpp.SmppTransceiverTransport and bind_mode: transmitter_receiver"
        )
    if path.startswith("vumi.transports."):
        return (
            f"Vumi's {path} is not available in ray_dispatch; available Vumi transports: {', '.join(VUMI_TRANSPORTS)}"
        )
    if path.startswith("vumi.middleware."):
        names = ", ".join(f"vumi.middleware.{module}.{name}" for name, module in OUR_MIDDLEWARE.items())
        hint = did_you_mean(path.rpartition(".")[2], OUR_MIDDLEWARE)
        return f"Vumi's {path} is not available in ray_dispatch; available middleware: {names}{hint}"
    return None


def unsupported_vumi_config(raw: Mapping[str, Any]) -> str | None:
    """Say why a Vumi config cannot run here (an endpoint dispatcher's); None if it may be a dispatcher config."""
    if "router_class" in raw:
        return None
    found = [key for key in _ENDPOINT_DISPATCHER_KEYS if key in raw]
    if found:
        return f"{found[0]!r} is a key of Vumi's endpoint dispatchers: {_ENDPOINT_DISPATCHER_ADVICE}"
    return None


class _IncludeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus Vumi's ``!include``; one loader per file, so includes resolve against it."""

    including: tuple[Path, ...] = ()


class IncludeError(ValueError):
    """An ``!include`` that cannot be followed (outside the config's folder, a cycle, unreadable)."""


def _include(loader: _IncludeLoader, node: yaml.Node) -> Any:
    """Load the file a ``!include`` names, relative to the including file, inside its folder."""
    name = loader.construct_scalar(node)  # type: ignore[arg-type]
    current = loader.including[-1]
    root = loader.including[0].parent
    target = (current.parent / str(name)).resolve()
    if not target.is_relative_to(root):
        raise IncludeError(f"!include {name!r}: only files in the config's folder ({root}) or below may be included")
    if target in loader.including:
        raise IncludeError(
            f"!include {name!r}: includes itself (through {' -> '.join(p.name for p in loader.including)})"
        )
    return load_yaml(target, (*loader.including, target))


_IncludeLoader.add_constructor("!include", _include)


def load_yaml(path: Path, including: tuple[Path, ...] = ()) -> Any:
    """Read a YAML file with the safe loader and Vumi's ``!include`` tag (no other tags).

    ``!include other.yaml`` is replaced by that file's contents, read
    relative to the including file; only files in the top config's folder or
    below may be included, and a cycle is refused.

    Raises:
        IncludeError: an include outside the folder, a cycle, or an unreadable included file.
        OSError: the file cannot be read.
        yaml.YAMLError: the text is not YAML (or uses another tag).
    """
    resolved = path.resolve()
    chain = including or (resolved,)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        if len(chain) == 1:
            raise
        raise IncludeError(f"!include {path.name!r}: cannot read {resolved} ({exc.strerror or exc})") from None
    loader = _IncludeLoader(text)
    loader.including = chain
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
