"""A throwaway prosody XMPP server on loopback, started in the foreground and stopped by PID.

Everything lives in one temp dir: config, data, logs. Plaintext auth is allowed
(loopback only), and s2s, TLS, HTTP, offline storage (unless asked) and the admin socket are off.
Stream management (XEP-0198, ``mod_smacks``) is on unless asked otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from peers.net import stop_process, wait_for_port

CONFIG = """\
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}/certs"
run_as_root = true
prosody_user = "{user}"
log = {{ info = "{dir}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{}}
legacy_ssl_ports = {{}}
s2s_ports = {{}}
http_ports = {{}}
https_ports = {{}}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
modules_enabled = {{ "roster"; "saslauth"; "disco"; "ping"; "posix"{extra_modules} }}
modules_disabled = {{ "s2s"; "tls"; "http"; "admin_socket"{disabled_offline} }}
VirtualHost "{domain}"
"""


def prosody_available() -> bool:
    """Whether the prosody and prosodyctl commands are installed."""
    return shutil.which("prosody") is not None and shutil.which("prosodyctl") is not None


class ProsodyServer:
    """One prosody process with its own config in ``workdir``, listening on 127.0.0.1:``port``."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        domain: str = "localhost",
        *,
        stream_management: bool = True,
        offline_storage: bool = False,
    ) -> None:
        self.workdir = workdir
        self.port = port
        self.domain = domain
        self.config_path = workdir / "prosody.cfg.lua"
        self.process: subprocess.Popen[bytes] | None = None
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        (workdir / "certs").mkdir(exist_ok=True)
        import getpass

        self.config_path.write_text(
            CONFIG.format(
                dir=workdir,
                port=port,
                domain=domain,
                user=getpass.getuser(),
                extra_modules='; "smacks"' if stream_management else "",
                disabled_offline="" if offline_storage else '; "offline"',
            ),
            encoding="utf-8",
        )

    def register(self, user: str, password: str) -> str:
        """Create an account (prosodyctl, offline); return its bare JID."""
        subprocess.run(
            ["prosodyctl", "--config", str(self.config_path), "register", user, self.domain, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return f"{user}@{self.domain}"

    def start(self) -> None:
        """Start prosody in the foreground (its own process group) and wait until it listens."""
        log = open(self.workdir / "prosody.out", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["prosody", "--config", str(self.config_path), "-F"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for_port(self.port, 20, self.process)

    def stop(self) -> None:
        """Stop prosody by its PID (idempotent)."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None
