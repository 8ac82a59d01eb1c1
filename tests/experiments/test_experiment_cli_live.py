"""``explain --deployment`` and ``graph --deployment`` wiring, with a fake deployment provider (no Ray).

The real provider (``ray_dispatch.cli``) is exercised against a running
deployment in tests/ray/test_explain_on_ray.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click
import pytest
from click.testing import CliRunner

from ray_dispatch.core.dispatcher import Dispatcher
from ray_dispatch.core.errors import ConfigError, DispatchError
from ray_dispatch.testing import MemoryOutbox, make_inbound
from ray_dispatch.tools import draw
from ray_dispatch.tools.cli import register
from ray_dispatch.tools.recent import RecentOutcomes, explain_recorded


class FakeLive:
    """Answers for deployment 'dep' in namespace 'ns' from an in-process dispatcher; records the calls."""

    default_namespace = "ns"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.calls: list[tuple[Any, ...]] = []
        self.recent = RecentOutcomes(10)
        self.message = make_inbound("hi", transport_name="xmpp", message_id="m-1")

    def _check(self, deployment: str, namespace: str) -> None:
        if (deployment, namespace) != ("dep", "ns"):
            raise DispatchError(f"no deployment named {deployment!r} runs in namespace {namespace!r}")

    def explain(self, deployment: str, namespace: str, address: str | None, message_id: str) -> Any:
        self.calls.append(("explain", deployment, namespace, address, message_id))
        self._check(deployment, namespace)

        async def run() -> Any:
            core = Dispatcher(self.config, MemoryOutbox())
            await core.start()
            self.recent.add("inbound", "xmpp", self.message, await core.dispatch("inbound", self.message, "xmpp"))
            recorded = self.recent.get(message_id)
            if recorded is None:
                raise self.recent.not_found(message_id, f"dispatcher 0 of deployment {deployment!r}")
            return await explain_recorded(core.config, recorded, live_store=core.store, deployment=deployment)

        return asyncio.run(run())

    def graph(self, deployment: str, namespace: str, address: str | None) -> Any:
        self.calls.append(("graph", deployment, namespace, address))
        self._check(deployment, namespace)
        if address == "broken":
            raise ConnectionError("connection refused")
        return draw(self.config, counts={"inbound:app1": 7}, replicas={"app1": 2}, title="live dep")


@pytest.fixture
def live(simple_config):
    return FakeLive(simple_config)


@pytest.fixture
def run(live):
    group = click.Group("main")
    register(group, live=live)

    def invoke(*args: Any) -> Any:
        return CliRunner().invoke(group, [str(a) for a in args])

    return invoke


def one_line_error(result: Any, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_explain_by_id_prints_both_sides(run, live):
    result = run("explain", "--deployment", "dep", "m-1")
    assert result.exit_code == 0, result.output
    assert "what happened: delivered to inbound:app1, inbound:app2" in result.output
    assert "route_mappings['xmpp'] -> ['app1', 'app2']" in result.output
    assert "the re-run routes it as the dispatcher did." in result.output
    assert live.calls == [("explain", "dep", "ns", None, "m-1")]
    data = json.loads(run("explain", "--deployment", "dep", "m-1", "--json", "--address", "auto").output)
    assert data["agrees"] is True and data["recorded"]["destinations"] == ["inbound:app1", "inbound:app2"]
    assert live.calls[-1] == ("explain", "dep", "ns", "auto", "m-1")


def test_explain_by_id_errors(run):
    one_line_error(run("explain", "--deployment", "dep", "nope"), 2, "'nope' is not among the last 1 messages")
    one_line_error(run("explain", "--deployment", "other", "m-1"), 1, "no deployment named 'other'")
    one_line_error(run("explain", "--deployment", "dep", "--namespace", "x", "m-1"), 1, "namespace 'x'")
    mixed = run("explain", "--deployment", "dep", "m-1", "message.json")
    assert mixed.exit_code == 2 and "give only the MESSAGE_ID" in mixed.output
    alone = run("explain", "config.yaml")
    assert alone.exit_code == 2 and "give CONFIG and MESSAGE.json, or --deployment NAME" in alone.output


def test_the_file_form_still_works_next_to_the_deployment_form(run, simple_config, write_yaml, tmp_path):
    message = tmp_path / "m.json"
    message.write_text(make_inbound("x", transport_name="sms").to_json(), encoding="utf-8")
    result = run("explain", write_yaml(simple_config, "c.yaml"), message)
    assert result.exit_code == 0 and result.output.strip().endswith("result: delivered to inbound:app1")


def test_graph_of_a_deployment(run, live, tmp_path):
    out = tmp_path / "live.svg"
    result = run("graph", "--deployment", "dep", "-o", out)
    assert result.exit_code == 0, result.output
    svg = out.read_text(encoding="utf-8")
    assert "live dep" in svg and "7 msgs" in svg and "app1 \u00d72" in svg
    assert live.calls == [("graph", "dep", "ns", None)]
    assert run("graph", "--deployment", "dep", "-o", "-").output.startswith("<svg")


def test_graph_of_a_deployment_errors(run, tmp_path):
    one_line_error(run("graph", "--deployment", "gone", "-o", tmp_path / "x.svg"), 1, "no deployment named 'gone'")
    one_line_error(
        run("graph", "--deployment", "dep", "--address", "broken", "-o", tmp_path / "x.svg"),
        1,
        "cannot reach the Ray cluster: connection refused",
    )
    one_line_error(run("graph", "--deployment", "dep", "-o", tmp_path / "x.gif"), 2, "name the file .svg or .png")
    both = run("graph", "c.yaml", "--deployment", "dep", "-o", tmp_path / "x.svg")
    assert both.exit_code == 2 and "give no CONFIG or --traffic" in both.output
    neither = run("graph", "-o", tmp_path / "x.svg")
    assert neither.exit_code == 2 and "give CONFIG, or --deployment NAME" in neither.output


def test_without_a_provider_there_is_no_deployment_option():
    group = click.Group("plain")
    register(group)
    result = CliRunner().invoke(group, ["graph", "--deployment", "dep", "-o", "x.svg"])
    assert result.exit_code == 2 and "No such option '--deployment'" in result.output


def test_config_errors_from_a_deployment_are_exit_2(simple_config):
    class Refusing(FakeLive):
        def graph(self, deployment: str, namespace: str, address: str | None) -> Any:
            raise ConfigError("endpoints.sms.replicas: must be >= 0")

    group = click.Group("main")
    register(group, live=Refusing(simple_config))
    result = CliRunner().invoke(group, ["graph", "--deployment", "dep", "-o", "-"])
    one_line_error(result, 2, "endpoints.sms.replicas")
