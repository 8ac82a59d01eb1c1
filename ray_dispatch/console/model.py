"""What the console's pages and JSON API show, computed from ``Deployment.status()`` and the config.

Plain functions over plain dicts (no Ray, no aiohttp), so the numbers a page
shows are tested on their own: rates per endpoint link, one row per endpoint
replica (node, health, connection state and reason), the dispatchers'
latencies, and the config with its secrets masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from actors.connection import describe_connection
from ray_dispatch.core.stores.redis_routing import MASK, mask_url

SECRET_KEY = re.compile(r"pass(word|wd)?$|secret|token|api_?key|credential|private", re.IGNORECASE)
"""Config keys whose values are shown as ``***`` (a Vumi config may carry such a value inline)."""

URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]*@|[?&]password=", re.IGNORECASE)


def masked(value: Any, key: str = "") -> Any:
    """``value`` (a config, or part of one) with secrets replaced by ``***``.

    A value under a key that names a secret (``password``, ``token``,
    ``secret``, ``api_key``, ...) is masked unless it is a ``{env: NAME}`` or
    ``{file: PATH}`` reference (where the secret lives, not the secret); a
    URL's password (``redis://user:pw@host``, ``?password=``) is masked too.
    """
    if isinstance(value, Mapping):
        if key and SECRET_KEY.search(key) and not _is_reference(value):
            return MASK
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item, key) for item in value]
    if key and SECRET_KEY.search(key) and value is not None and not isinstance(value, bool):
        return MASK
    if isinstance(value, str) and URL_WITH_PASSWORD.search(value):
        return mask_url(value)
    return value


def _is_reference(value: Mapping[str, Any]) -> bool:
    return set(value) <= {"env", "file"} and len(value) == 1 and all(isinstance(v, str) for v in value.values())


def config_yaml(raw: Mapping[str, Any]) -> str:
    """The config as YAML, secrets masked, keys in the order given."""
    return yaml.safe_dump(masked(dict(raw)), sort_keys=False, allow_unicode=True, default_flow_style=False)


def _rates_of(status: Mapping[str, Any], endpoint: str, stage: str) -> float:
    total = 0.0
    for dispatcher in status.get("dispatchers", []):
        rates = ((dispatcher.get("metrics") or {}).get("rates") or {}).get(stage) or {}
        total += sum(float(r) for key, r in rates.items() if key.partition(":")[2] == endpoint)
    return round(total, 1)


def _pending_of(status: Mapping[str, Any], endpoint: str) -> int:
    return sum(
        int(((d.get("metrics") or {}).get("pending") or {}).get(endpoint, 0)) for d in status.get("dispatchers", [])
    )


def health(replica: Mapping[str, Any]) -> str:
    """``dead``, ``not connected`` (alive, but a peer connection is down) or ``alive``."""
    if not replica.get("alive"):
        return "dead"
    return "not connected" if replica.get("connected") is False else "alive"


def endpoint_rows(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per endpoint: role, rates, pending, and its replicas (node, pid, health, connections).

    ``rate_from`` is what the dispatchers received from the endpoint per
    second, ``rate_to`` what they sent to it; each connection carries its
    ``state``, ``reason`` and a one-line ``text`` (``describe_connection``).
    """
    rows = []
    for name, entry in status.get("endpoints", {}).items():
        replicas = []
        for rid, replica in entry.get("replicas", {}).items():
            connections = [
                {**c, "text": describe_connection(c)} for c in (replica.get("connections") or []) if isinstance(c, dict)
            ]
            replicas.append(
                {
                    "replica": rid,
                    "health": health(replica),
                    "node_id": replica.get("node_id"),
                    "pid": replica.get("pid"),
                    "class": replica.get("class"),
                    "error": replica.get("error"),
                    "connections": connections,
                }
            )
        rows.append(
            {
                "endpoint": name,
                "role": entry.get("role"),
                "replicas": replicas,
                "alive": sum(r["health"] != "dead" for r in replicas),
                "rate_from": _rates_of(status, name, "received"),
                "rate_to": _rates_of(status, name, "published"),
                "failed_rate": _rates_of(status, name, "failed"),
                "pending": _pending_of(status, name),
            }
        )
    return rows


def dispatcher_rows(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per dispatcher: alive, node, router, failure count, batches and p50/p99 latencies (ms).

    ``latency`` maps ``batch`` (a batch in until it is confirmed) and each
    direction's end-to-end latency (created until delivered) to
    ``{"p50", "p99", "count"}``.
    """
    rows = []
    for d in status.get("dispatchers", []):
        metrics = d.get("metrics") or {}
        latency = {"batch": metrics.get("batch_latency_ms") or {}}
        latency.update({f"e2e {k}": v for k, v in (metrics.get("e2e_latency_ms") or {}).items()})
        rows.append(
            {
                "dispatcher": d.get("dispatcher"),
                "alive": d.get("alive", True),
                "error": d.get("error"),
                "node_id": d.get("node_id"),
                "router": d.get("router"),
                "failures": d.get("failures"),
                "batches": metrics.get("batches"),
                "mean_batch": metrics.get("mean_batch"),
                "latency": {
                    k: {"p50": v.get("p50"), "p99": v.get("p99"), "count": v.get("count")} for k, v in latency.items()
                },
            }
        )
    return rows


def generation_of(status: Mapping[str, Any]) -> int | None:
    """The config generation the dispatchers report (the highest; None before live reconfiguration exists)."""
    found = [d["generation"] for d in status.get("dispatchers", []) if isinstance(d.get("generation"), int)]
    return max(found) if found else None


def failure_matches(record: Mapping[str, Any], text: str) -> bool:
    """Whether a failure record's id, reason, stage or message content contains ``text`` (any case)."""
    if not text:
        return True
    message = record.get("message") or {}
    fields = [record.get("failure_id"), record.get("reason"), record.get("stage"), message.get("content")]
    return any(text.lower() in str(f).lower() for f in fields if f is not None)
