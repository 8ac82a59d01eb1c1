"""What the console computes and how it checks its settings, without Ray: masking, rows, rates, the console block."""

from __future__ import annotations

from typing import Any

import pytest

from ray_dispatch.console.app import is_loopback
from ray_dispatch.console.model import (
    config_yaml,
    dispatcher_rows,
    endpoint_rows,
    failure_matches,
    generation_of,
    masked,
)
from ray_dispatch.core.config import load_config
from ray_dispatch.core.errors import ConfigError
from ray_dispatch.preflight import preflight
from ray_dispatch.tools.draw import draw

BASE: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
}


def test_secrets_are_masked_but_where_they_live_is_shown() -> None:
    config = {
        "password": "hunter2",
        "xmpp": {"api_key": 1234, "token": {"env": "XMPP_TOKEN"}, "username": "bot"},
        "failure_store": {"url": "redis://user:pw@127.0.0.1:6379/0"},
        "transports": [{"secret": "abc", "enabled": True}],
        "other": "redis://127.0.0.1:6379/0?password=pw",
    }
    shown = masked(config)
    assert shown["password"] == "***"
    assert shown["xmpp"] == {"api_key": "***", "token": {"env": "XMPP_TOKEN"}, "username": "bot"}
    assert shown["failure_store"]["url"] == "redis://user:***@127.0.0.1:6379/0"
    assert shown["transports"] == [{"secret": "***", "enabled": True}]
    assert "pw" not in shown["other"]
    text = config_yaml(config)
    assert "hunter2" not in text and ":pw@" not in text and "username: bot" in text


def status_with(replicas: dict[str, Any], rates: dict[str, Any]) -> dict[str, Any]:
    return {
        "dispatchers": [
            {
                "dispatcher": 0,
                "node_id": "n1",
                "router": "R",
                "failures": 2,
                "metrics": {
                    "rates": rates,
                    "pending": {"app": 3},
                    "batches": 4,
                    "batch_latency_ms": {"count": 4, "p50": 1.5, "p99": 9.0},
                    "e2e_latency_ms": {"inbound": {"count": 4, "p50": 2.0, "p99": 12.0}},
                },
            },
            {"dispatcher": 1, "alive": False, "error": "ActorDiedError: gone"},
        ],
        "endpoints": {
            "sms": {"role": "transport", "replicas": replicas},
            "app": {"role": "application", "replicas": {}},
        },
    }


def test_endpoint_rows_carry_health_connections_rates_and_pending() -> None:
    down = {"connection": "TRX", "state": "refused", "since": 0.0, "reason": "ESME_RINVPASWD", "up": False}
    status = status_with(
        {
            "0": {"alive": True, "node_id": "n1", "pid": 7, "connections": [down], "connected": False},
            "1": {"alive": False, "error": "no answer"},
        },
        {"received": {"inbound:sms": 10.0, "event:sms": 2.5}, "published": {"outbound:sms": 4.0, "inbound:app": 9.0}},
    )
    sms, app = endpoint_rows(status)
    assert (sms["rate_from"], sms["rate_to"], app["rate_to"], app["pending"]) == (12.5, 4.0, 9.0, 3)
    assert [r["health"] for r in sms["replicas"]] == ["not connected", "dead"]
    assert sms["alive"] == 1 and app["replicas"] == []
    [connection] = sms["replicas"][0]["connections"]
    assert connection["state"] == "refused" and "ESME_RINVPASWD" in connection["text"]


def test_dispatcher_rows_carry_latencies_and_dead_dispatchers() -> None:
    alive, dead = dispatcher_rows(status_with({}, {}))
    assert alive["latency"]["batch"] == {"p50": 1.5, "p99": 9.0, "count": 4}
    assert alive["latency"]["e2e inbound"]["p99"] == 12.0
    assert not dead["alive"] and "gone" in dead["error"]


def test_the_generation_is_the_highest_a_dispatcher_reports() -> None:
    assert generation_of(status_with({}, {})) is None  # before live reconfiguration
    status = {"dispatchers": [{"generation": 3}, {"generation": 4}, {"alive": False}]}
    assert generation_of(status) == 4


def test_failure_text_filter_looks_at_id_reason_stage_and_content() -> None:
    record = {"failure_id": "f-1", "reason": "No Route", "stage": "route", "message": {"content": "Hello"}}
    assert all(failure_matches(record, t) for t in ["", "f-1", "no route", "ROUTE", "hell"])
    assert not failure_matches(record, "bye")


def test_the_picture_labels_each_link_with_its_rate() -> None:
    svg = draw(
        BASE, counts={"inbound:sms": 10, "inbound:app": 10}, rates={"inbound:sms": 2.0, "event:sms": 0.5}
    ).to_svg()
    assert "10 msgs \u00b7 2.5/s" in svg and "10 msgs</text>" in svg  # app has a count but no rate


def test_the_console_block_is_typed_and_a_bad_value_is_one_line_naming_it() -> None:
    loaded = load_config({**BASE, "console": {"host": "0.0.0.0", "port": 8899}})
    assert (loaded.console.enabled, loaded.console.host, loaded.console.port) == (True, "0.0.0.0", 8899)
    assert load_config(BASE).console.host == "127.0.0.1" and load_config({**BASE, "console": None}).console.port == 0
    bad_blocks = [({"port": 70000}, "console.port"), ({"hots": "x"}, "console.hots"), ({"enabled": "x"}, "enabled")]
    for bad, fragment in bad_blocks:
        with pytest.raises(ConfigError, match=fragment) as raised:
            preflight({**BASE, "console": bad})
        assert "\n" not in str(raised.value)


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
    assert not any(is_loopback(h) for h in ["0.0.0.0", "192.0.2.1", "::", "example.org"])


class NamedOnly:
    """Enough of a Deployment for the token check (the exporter is stubbed)."""

    name, namespace = "dep", "ns"

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "dispatchers": [], "endpoints": {}}


@pytest.mark.parametrize("metrics_open", [True, False])
async def test_metrics_need_the_token_unless_the_bind_is_loopback(
    metrics_open: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from ray_dispatch.console import app as console_app
    from ray_dispatch.console import prometheus

    def render(status: dict[str, Any]) -> tuple[bytes, str]:
        return f'ray_dispatch_up{{deployment="{status["name"]}"}} 1\n'.encode(), "text/plain; version=0.0.4"

    monkeypatch.setattr(prometheus, "render_metrics", render)
    app = console_app.Console(NamedOnly(), "tok", metrics_open=metrics_open, cookie="c").application()  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        anonymous = await client.get("/metrics")
        assert anonymous.status == (200 if metrics_open else 401)
        with_token = await client.get("/metrics", headers={"Authorization": "Bearer tok"})
        assert with_token.status == 200 and 'deployment="dep"' in await with_token.text()
        assert with_token.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert (await client.get("/api/openapi.json")).status == 401  # only /metrics is ever open
