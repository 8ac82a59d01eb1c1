"""Helpers for XMPP transport tests against prosody: a transport config with a password file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peers.prosody import ProsodyServer


def xmpp_config(prosody: ProsodyServer, secret_file: Path, password: str, **extra: Any) -> dict[str, Any]:
    """Config of an XmppTransport logging in as ``dispatcher@localhost`` with ``password`` (kept in ``secret_file``)."""
    secret_file.write_text(password + "\n")
    return {
        "jid": "dispatcher@localhost",
        "password": {"file": str(secret_file)},
        "host": "127.0.0.1",
        "port": prosody.port,
        "tls": "none",
        "allow_unencrypted_auth": True,
        **extra,
    }
