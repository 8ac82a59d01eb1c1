"""The ``ray-dispatch`` CLI against a running deployment, in-process (``CliRunner``) on the session's Ray.

The module's deployment is started by ``ray-dispatch run --detach`` itself and
stopped by the last test with ``ray-dispatch stop``. ``validate`` and
``--help`` also run as real subprocesses through the console script.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from click.testing import CliRunner, Result

import ray_dispatch
from actors.builtin import EchoApplication
from ray_dispatch.cli import main

pytestmark = pytest.mark.ray

NAME, NAMESPACE = "cli-test", "cli_tests"
TARGET = ["--name", NAME, "--namespace", NAMESPACE]
REPO_ROOT = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).with_name("ray-dispatch")

MEMORY = {"class": "actors.builtin.MemoryTransport"}
CONFIG: dict[str, Any] = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["smpp_transport", "xmpp_transport", "late_transport"],
    "exposed_names": ["my_application", "later_app"],
    "route_mappings": {
        "smpp_transport": "my_application",
        "xmpp_transport": "my_application",
        "late_transport": "later_app",
    },
    "endpoints": {
        "smpp_transport": {"class": "actors.builtin.MemoryTransport"},
        "xmpp_transport": {"class": "actors.builtin.MemoryTransport", "config": {"transport_type": "xmpp"}},
        "my_application": {"class": "actors.builtin.EchoApplication", "replicas": 2},
    },
}


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, code: int, *fragments: str) -> str:
    """The command failed with ``code`` and a single stderr line containing every fragment."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def failure_id_of(sent: Result) -> str:
    """The failure id ``send`` printed for a message that could not be delivered."""
    return sent.stdout.split("[failure ")[1].split("]")[0]


def write_config(path: Path, config: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_config(tmp_path_factory.mktemp("cli") / "dispatcher.yaml", CONFIG)


@pytest.fixture(scope="module")
def running(ray_session: None, config_file: str) -> Iterator[str]:
    """The deployment, started detached by ``ray-dispatch run``; yields what ``run`` printed."""
    result = cli("run", config_file, "--detach", *TARGET)
    try:
        assert result.exit_code == 0, (result.stdout, result.stderr)
        yield result.stdout
    finally:
        with contextlib.suppress(ray_dispatch.DeploymentNotFound):
            ray_dispatch.attach(NAME, NAMESPACE).shutdown()


def test_run_detach_prints_what_runs_where(running: str) -> None:
    assert f"deployment {NAME!r} (namespace {NAMESPACE!r})" in running
    assert "dispatcher 0: SimpleDispatchRouter" in running
    assert "transport smpp_transport: 1 replica(s)" in running
    assert "application my_application: 2 replica(s)" in running
    assert "application later_app: 0 replica(s)" in running
    assert running.count("alive  actors.builtin.") == 4
    assert "running detached" in running
    address = ray.get_runtime_context().gcs_address
    assert (
        f"ray address: {address} (other commands on this machine find it by --name {NAME};"
        f" from elsewhere: --address {address}, or RAY_ADDRESS)"
    ) in running


def test_validate_accepts_a_valid_config(config_file: str) -> None:
    result = cli("validate", config_file)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{config_file}: valid (vumi.dispatchers.SimpleDispatchRouter;")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"route_mappings": {"smpp_transport": "nobody"}}, ["route_mappings", "nobody"]),
        ({"endpoints": {"my_application": {"class": "actors.builtin.EchoApplication", "replicas": -1}}}, ["replicas"]),
        ({"endpoints": {"my_application": {"class": "actors.builtin.MemoryTransport"}}}, ["endpoints.my_application"]),
        ({"endpoints": {"smpp_transport": {"class": "actors.nope.Transport"}}}, ["endpoints.smpp_transport.class"]),
        ({"endpoints": {"smpp_transport": {**MEMORY, "config": {"auto_ak": 1}}}}, ["auto_ak"]),
        ({"endpoints": {"my_application": {"policy": "random"}}}, ["policy"]),
        ({"endpoints": {"my_application": {"actor_options": {"num_cpu": 1}}}}, ["actor_options", "num_cpu"]),
    ],
)
def test_validate_rejects_an_invalid_config_with_one_line_naming_the_key(
    tmp_path: Path, change: dict[str, Any], fragments: list[str]
) -> None:
    path = write_config(tmp_path / "bad.yaml", {**CONFIG, **change})
    assert_one_line_error(cli("validate", path), 2, path, *fragments)


def test_validate_names_a_missing_file_and_broken_yaml(tmp_path: Path) -> None:
    assert_one_line_error(cli("validate", str(tmp_path / "absent.yaml")), 2, "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("router_class: [unclosed\n")
    assert_one_line_error(cli("validate", str(broken)), 2, "broken.yaml")


def test_send_prints_the_destinations(running: str) -> None:
    result = cli("send", "smpp_transport", "hello from the shell", "--from", "+27820000123", *TARGET)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("message ") and len(lines[0].split()[1]) == 32
    assert lines[1:] == ["  -> inbound:my_application"]


def test_send_with_trace_and_json_fields(running: str) -> None:
    extra = json.dumps({"to_addr": "*120#", "helper_metadata": {"shell": True}})
    result = cli("send", "xmpp_transport", "traced", "--json", extra, "--trace", *TARGET)
    assert result.exit_code == 0, result.stderr
    assert "  -> inbound:my_application" in result.stdout
    assert "route_mappings['xmpp_transport']" in result.stdout
    replies = ray.get(ray_dispatch.attach(NAME, NAMESPACE).endpoint("xmpp_transport").wait_for_sent.remote(1, 10))
    assert any(r["from_addr"] == "*120#" and r["content"] == "traced" for r in replies)


def test_status_shows_endpoints_replicas_and_counts(running: str) -> None:
    def counts() -> tuple[int, int]:
        [dispatcher] = json.loads(cli("status", "--json", *TARGET).stdout)["dispatchers"]
        stats = dispatcher["stats"]
        return stats["received"].get("inbound:smpp_transport", 0), stats["published"].get("inbound:my_application", 0)

    received, published = counts()
    assert cli("send", "smpp_transport", "counted", *TARGET).exit_code == 0
    assert counts() == (received + 1, published + 1)
    result = cli("status", *TARGET)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count(" alive ") == 4 and "DEAD" not in result.stdout
    smpp = status_block(result.stdout, "  transport smpp_transport: 1 replica(s)")
    assert [line.split()[:2] for line in smpp if line.startswith("    [")] == [["[0]", "alive"]]
    assert any(f"'inbound:smpp_transport': {received + 1}" in line for line in smpp if "from it:" in line)
    app = status_block(result.stdout, "  application my_application: 2 replica(s)")
    assert [line.split()[:2] for line in app if line.startswith("    [")] == [["[0]", "alive"], ["[1]", "alive"]]
    assert any(f"'inbound:my_application': {published + 1}" in line for line in app if "to it:" in line)


def status_block(out: str, header: str) -> list[str]:
    """The lines ``status`` printed under one endpoint's header line."""
    lines = out.splitlines()
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[start:end]


def test_failures_undeliverable_lists_and_clears_what_endpoints_hold(running: str) -> None:
    xmpp = ray_dispatch.attach(NAME, NAMESPACE).endpoint("xmpp_transport")
    assert ray.get(xmpp.inject_from_peer.remote(from_addr="bob@example.org", to_addr=42, content="bad")) is None

    listed = cli("failures", "undeliverable", *TARGET)
    assert listed.exit_code == 0, listed.stderr
    [line, total] = listed.stdout.strip().splitlines()
    assert "validate xmpp_transport[0]" in line and "to_addr" in line
    assert total == "1 undeliverable record(s)"
    only_smpp = cli("failures", "undeliverable", "--endpoint", "smpp_transport", *TARGET)
    assert only_smpp.stdout.strip() == "0 undeliverable record(s)"
    assert (
        cli("failures", "undeliverable", "--clear", *TARGET)
        .stdout.rstrip()
        .endswith("1 undeliverable record(s), cleared")
    )
    assert cli("failures", "undeliverable", *TARGET).stdout.strip() == "0 undeliverable record(s)"
    assert_one_line_error(cli("failures", "undeliverable", "--endpoint", "nope", *TARGET), 2, "unknown endpoint 'nope'")


def test_failures_list_show_replay_and_purge(running: str) -> None:
    assert cli("failures", "purge", "--all", *TARGET).exit_code == 0
    sent = cli("send", "late_transport", "too early", *TARGET)
    assert sent.exit_code == 1, "nothing delivered: the command fails"
    assert "later_app" in sent.stdout and "no replicas" in sent.stdout
    failure_id = failure_id_of(sent)

    listed = cli("failures", "list", *TARGET)
    assert listed.exit_code == 0
    assert failure_id in listed.stdout and listed.stdout.rstrip().endswith("1 failure record(s)")
    shown = json.loads(cli("failures", "show", failure_id, *TARGET).stdout)
    assert shown["failure_id"] == failure_id and shown["message"]["content"] == "too early"

    dep = ray_dispatch.attach(NAME, NAMESPACE)
    dep.spawn("later_app", EchoApplication, config={"reply": False})
    replayed = cli("failures", "replay", failure_id, *TARGET)
    assert replayed.exit_code == 0, (replayed.stdout, replayed.stderr)
    assert replayed.stdout.strip() == "-> inbound:later_app"
    received = ray.get(dep.endpoint("later_app").received.remote())["messages"]
    assert [m["content"] for m in received] == ["too early"]
    assert cli("failures", "list", *TARGET).stdout.strip() == "0 failure record(s)"

    dep.stop_endpoint("later_app")
    ids = [failure_id_of(cli("send", "late_transport", f"lost {i}", *TARGET)) for i in range(3)]
    assert cli("failures", "purge", ids[0], *TARGET).stdout.strip() == "purged 1 failure record(s)"
    assert cli("failures", "purge", "--all", *TARGET).stdout.strip() == "purged 2 failure record(s)"
    assert_one_line_error(cli("failures", "purge", *TARGET), 2, "--all")
    assert_one_line_error(cli("failures", "show", "no-such-id", *TARGET), 2, "no-such-id")
    assert_one_line_error(cli("failures", "replay", "no-such-id", *TARGET), 2, "no-such-id")


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (["send", "nope", "x"], 2, ["unknown endpoint 'nope'"]),
        (["send", "smpp_transport", "x", "--json", "{not json"], 2, ["--json is not valid JSON"]),
        (["send", "smpp_transport", "x", "--json", "[1, 2]"], 2, ["--json must be a JSON object"]),
        (["send", "smpp_transport", "x", "--json", '{"to_addr": 5}'], 2, ["to_addr"]),
        (["send", "smpp_transport", "x", "--json", '{"session_event": "maybe"}'], 2, ["session_event"]),
        (["status", "--name", "nobody", "--namespace", NAMESPACE], 1, ["'nobody'", "on the Ray cluster at"]),
    ],
)
def test_bad_input_is_one_clear_line_and_the_deployment_keeps_routing(
    running: str, args: list[str], code: int, fragments: list[str]
) -> None:
    target = [] if "--name" in args else TARGET
    assert_one_line_error(cli(*args, *target), code, *fragments)
    after = cli("send", "smpp_transport", "still routing", *TARGET)
    assert after.exit_code == 0 and "-> inbound:my_application" in after.stdout


def test_run_with_an_invalid_config_starts_nothing_and_the_deployment_keeps_routing(
    running: str, tmp_path: Path
) -> None:
    bad = write_config(tmp_path / "bad.yaml", {**CONFIG, "endpoints": {"my_application": {"replicas": "many"}}})

    def actor_names() -> list[str]:
        return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True))

    before = actor_names()
    result = cli("run", bad, "--detach", "--name", "never", "--namespace", NAMESPACE)
    assert_one_line_error(result, 2, bad, "endpoints.my_application.replicas")
    assert actor_names() == before
    after = cli("send", "smpp_transport", "still routing", *TARGET)
    assert after.exit_code == 0 and "-> inbound:my_application" in after.stdout


def test_console_script_help_and_validate_as_subprocesses(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CONSOLE_SCRIPT), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
        )

    helped = run("--help")
    assert helped.returncode == 0
    for command in ("run", "validate", "send", "status", "stop", "failures"):
        assert f"  {command} " in helped.stdout
    valid = run("validate", "examples/seed.yaml")
    assert valid.returncode == 0 and valid.stdout.startswith("examples/seed.yaml: valid"), valid.stderr
    bad = write_config(tmp_path / "bad.yaml", {**CONFIG, "transport_names": "smpp_transport"})
    invalid = run("validate", bad)
    assert invalid.returncode == 2 and invalid.stdout == ""
    [line] = invalid.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: ") and "transport_names" in line


def test_stop_ends_the_deployment(running: str) -> None:
    result = cli("stop", *TARGET)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"deployment {NAME!r} stopped"
    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(f"{NAME}:")]
    assert_one_line_error(cli("status", *TARGET), 1, f"no deployment named {NAME!r}")
