"""A throwaway Prometheus server on loopback that scrapes one target every second; stopped by PID.

Config, TSDB data and log live in one temp dir. ``query`` asks Prometheus's own
HTTP API (``/api/v1/query``) and returns its ``result`` list.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.peers.net import stop_process, wait_for_port

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ray_dispatch
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
"""


def prometheus_available() -> bool:
    """Whether the ``prometheus`` server command is installed (Debian's ``prometheus`` package)."""
    return shutil.which("prometheus") is not None


class PrometheusServer:
    """One Prometheus process with its config and data in ``workdir``, listening on 127.0.0.1:``port``.

    Args:
        workdir: an empty directory of its own.
        port: where its HTTP API listens.
        target: ``host:port`` it scrapes ``/metrics`` of.
    """

    def __init__(self, workdir: Path, port: int, target: str) -> None:
        self.workdir = workdir
        self.port = port
        self.config_path = workdir / "prometheus.yml"
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path.write_text(CONFIG.format(target=target), encoding="utf-8")

    def start(self) -> None:
        """Start prometheus (its own process group) and wait until its HTTP API listens."""
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for_port(self.port, 60, self.process)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The ``result`` of an instant query: ``[{"metric": {labels}, "value": [time, "value"]}, ...]``.

        Raises:
            RuntimeError: Prometheus answered with an error (its own words).
        """
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        if answer.get("status") != "success":
            raise RuntimeError(f"prometheus refused {promql!r}: {answer.get('error')}")
        return list(answer["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        """Its active scrape targets (``/api/v1/targets``): health, last error, last scrape."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/targets", timeout=10) as response:
            return list(json.load(response)["data"]["activeTargets"])

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log (for a failing test's message)."""
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop prometheus by its PID (idempotent)."""
        if self.process is not None:
            stop_process(self.process, timeout=15)
            self.process = None
