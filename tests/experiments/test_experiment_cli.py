"""The experiments' click commands: output, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from ray_dispatch.testing import make_inbound
from ray_dispatch.tools.cli import EXIT_ERROR, experiments, register


@pytest.fixture
def run():
    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(experiments, [str(a) for a in args], input=input)

    return invoke


@pytest.fixture
def files(simple_config, write_yaml, write_jsonl, tmp_path):
    message = tmp_path / "message.json"
    message.write_text(make_inbound("hi", transport_name="xmpp", message_id="m1").to_json(), encoding="utf-8")
    moved = {**simple_config, "route_mappings": {"sms": "app2", "xmpp": ["app1", "app2"]}}
    return {
        "config": write_yaml(simple_config, "old.yaml"),
        "new": write_yaml(moved, "new.yaml"),
        "message": message,
        "traffic": write_jsonl([make_inbound(transport_name=t) for t in ("sms", "xmpp", "ussd", "sms")] + ["junk"]),
        "dir": tmp_path,
    }


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == EXIT_ERROR, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_explain_prints_the_steps(run, files):
    result = run("explain", files["config"], files["message"])
    assert result.exit_code == 0, result.output
    assert "route_mappings['xmpp'] -> ['app1', 'app2']" in result.output
    assert result.output.strip().endswith("result: delivered to inbound:app1, inbound:app2")


def test_explain_options_json_and_stdin(run, files):
    reply = make_inbound(transport_name="sms").reply("back").to_json()
    result = run(
        "explain", files["config"], "-", "--endpoint", "app1", "--direction", "outbound", "--json", input=reply
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["destinations"] == ["outbound:sms"] and data["direction"] == "outbound"


def test_explain_errors_are_one_line(run, files):
    assert_one_line_error(run("explain", files["dir"] / "absent.yaml", files["message"]), "absent.yaml", "not found")
    assert_one_line_error(run("explain", files["config"], files["dir"] / "absent.json"), "cannot read message file")
    bad = files["dir"] / "bad.json"
    bad.write_text('{"to_addr": ', encoding="utf-8")
    assert_one_line_error(run("explain", files["config"], bad), "bad.json: not valid JSON")
    bad.write_text("[1]", encoding="utf-8")
    assert_one_line_error(run("explain", files["config"], bad), "expected a JSON object")
    broken = files["dir"] / "broken.yaml"
    broken.write_text("router_class: routers.NoSuchRouter\ntransport_names: [sms]\n", encoding="utf-8")
    assert_one_line_error(run("explain", broken, files["message"]), "router_class", "NoSuchRouter")
    assert_one_line_error(
        run("explain", files["config"], files["message"], "-d", "outbound"), "outbound record needs 'endpoint'"
    )
    result = run("explain", files["config"], files["message"], "-d", "sideways")
    assert result.exit_code == 2 and "Traceback" not in result.output  # click's own usage error


def test_replay_summary_and_json(run, files):
    result = run("replay", files["config"], files["traffic"])
    assert result.exit_code == 0, result.output
    assert "replayed 5 lines" in result.output and "inbound:app1" in result.output
    data = json.loads(run("replay", files["config"], files["traffic"], "--json").output)
    assert data["delivered"] == {"inbound:app1": 3, "inbound:app2": 1}
    assert [f["lines"] for f in data["failures"]] == [[3], [5]]


def test_replay_errors_are_one_line(run, files):
    assert_one_line_error(run("replay", files["config"], files["dir"] / "absent.jsonl"), "traffic file not found")
    bad = files["dir"] / "bad.yaml"
    bad.write_text("router_class: [unclosed", encoding="utf-8")
    assert_one_line_error(run("replay", bad, files["traffic"]), "bad.yaml", "not valid YAML")


def test_diff_reports_changes_and_exit_code(run, files):
    result = run("diff", files["config"], files["new"], files["traffic"])
    assert result.exit_code == 0, result.output
    assert "4 messages of" in result.output and "2 routed differently" in result.output
    assert run("diff", files["config"], files["new"], files["traffic"], "--exit-code").exit_code == 1
    same = run("diff", files["config"], files["config"], files["traffic"], "--exit-code")
    assert same.exit_code == 0 and "0 routed differently" in same.output
    data = json.loads(run("diff", files["config"], files["new"], files["traffic"], "--json").output)
    assert data["changed"] == 2 and data["transitions"] == [{"old": "inbound:app1", "new": "inbound:app2", "count": 2}]
    assert_one_line_error(run("diff", files["config"], files["dir"] / "nope.yaml", files["traffic"]), "nope.yaml")


def test_graph_writes_svg_and_reports_errors(run, files):
    out = files["dir"] / "topology.svg"
    result = run("graph", files["config"], "-o", out, "--traffic", files["traffic"])
    assert result.exit_code == 0, result.output
    svg = out.read_text(encoding="utf-8")
    assert all(name in svg for name in ("sms", "xmpp", "ussd", "app1", "app2")) and "3 msgs" in svg
    stdout = run("graph", files["config"], "-o", "-")
    assert stdout.exit_code == 0 and stdout.output.startswith("<svg")
    assert_one_line_error(run("graph", files["config"], "-o", files["dir"] / "t.gif"), "name the file .svg or .png")
    assert_one_line_error(run("graph", files["config"], "-o", files["dir"] / "no" / "dir.svg"), "dir.svg")


def test_register_adds_the_commands_to_any_group():
    group = click.Group("main")
    register(group)
    assert sorted(group.commands) == ["diff", "explain", "graph", "replay"]


def test_experiments_import_no_ray():
    code = "import sys, ray_dispatch.tools, ray_dispatch.tools.cli; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
