"""The CLI's and the API's front door without Ray: one ``error:`` line per mistake, arguments checked by name."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from click.testing import CliRunner, Result

from ray_dispatch.cli import main
from ray_dispatch.core.config import load_config
from ray_dispatch.core.errors import ConfigError, InvalidMessage
from ray_dispatch.run_state import STATE_DIR_ENV, RunRecord, write_record


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_error_line(result: Result, code: int, *fragments: str) -> str:
    """The command failed with ``code`` and a single stderr line ``error: ...`` containing every fragment."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "--bogus"], ["No such option '--bogus'", "run --help"]),
        (["status", "--addres", "x"], ["--addres", "Did you mean '--address'?"]),
        (["nope"], ["No such command 'nope'"]),
        (["validate"], ["Missing argument 'CONFIG'", "validate --help"]),
        (["graph"], ["--output"]),
        (["failures", "show"], ["Missing argument 'FAILURE_ID'"]),
    ],
)
def test_usage_errors_are_one_error_line_with_exit_2(args: list[str], fragments: list[str]) -> None:
    one_error_line(cli(*args), 2, *fragments)


def test_run_help_says_which_ray_it_uses() -> None:
    helped = " ".join(cli("run", "--help").stdout.split())
    assert "It runs on a new local Ray of its own unless --address or RAY_ADDRESS names a cluster." in helped
    assert "Default: a new local Ray, stopped with the deployment." in helped
    assert "needs --address or RAY_ADDRESS" in helped
    assert "the running one" not in helped


def test_help_and_version_still_exit_0() -> None:
    helped = cli("--help")
    assert helped.exit_code == 0 and "Usage:" in helped.stdout
    assert cli("--version").exit_code == 0


CONFIG = {
    "router_class": "vumi.dispatchers.SimpleDispatchRouter",
    "transport_names": ["sms"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
}


@pytest.fixture
def deployment() -> Any:
    """A Deployment object with no dispatchers: argument checks run before anything is asked of Ray."""
    from ray_dispatch.api import Deployment

    return Deployment("dep", "ns", load_config(CONFIG), [])


@pytest.mark.parametrize(
    ("call", "error", "fragments"),
    [
        (lambda d: d.send(["x"], "hi"), ConfigError, ["endpoint: expected a string, got list ['x']"]),
        (lambda d: d.send({"a": 1}, "hi"), ConfigError, ["endpoint: expected a string, got dict"]),
        (lambda d: d.failure(["f1"]), InvalidMessage, ["failure_id: expected a string, got list"]),
        (lambda d: d.failure({"id": 1}), InvalidMessage, ["failure_id", "dict"]),
        (lambda d: d.replay_failure(["f1"]), InvalidMessage, ["failure_id: expected a string"]),
        (lambda d: d.replay_failure("f1", ["sms"]), ConfigError, ["endpoint: expected a string"]),
        (lambda d: d.replay_failure("f1", "smss"), ConfigError, ["'smss'"]),
        (lambda d: d.purge_failures("f1"), InvalidMessage, ["failure_ids: expected a list of failure ids", "str"]),
        (lambda d: d.purge_failures({"f1": 1}), InvalidMessage, ["failure_ids: expected a list", "dict"]),
        (lambda d: d.purge_failures(["ok", ["f1"]]), InvalidMessage, ["failure_ids[1]: expected a string"]),
    ],
)
def test_api_arguments_of_the_wrong_type_raise_the_promised_error_naming_them(
    deployment: Any, call: Callable[[Any], Any], error: type[Exception], fragments: list[str]
) -> None:
    with pytest.raises(error) as raised:
        call(deployment)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_an_unknown_failure_id_is_still_a_key_error(deployment: Any) -> None:
    with pytest.raises(KeyError, match="no failure record with id 'f1'"):
        deployment.failure("f1")


def test_broken_yaml_names_the_file_and_keeps_line_and_column(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("router_class: [unclosed\nx: 1\n")
    line = one_error_line(cli("validate", str(broken)), 2)
    assert line == (
        f"error: {broken}: not valid YAML: line 2, column 2: expected ',' or ']', but got ':'"
        " (while parsing a flow sequence started at line 1, column 15)"
    )
    assert "<unicode string>" not in line


# -- which Ray a command uses (subprocesses: this test process may be connected to a Ray of its own) ---------------

CONSOLE_SCRIPT = Path(sys.executable).with_name("ray-dispatch")
REPO_ROOT = Path(__file__).resolve().parents[1]


def ray_dispatch(state: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the console script with ``state`` as its records directory and no RAY_ADDRESS / RAY_AUTH_MODE."""
    environ = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    environ.update({STATE_DIR_ENV: str(state), **env})
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=120
    )


def one_line_from(done: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The process failed with ``code`` and one stderr line ``error: ...`` containing every fragment."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_address_fails_at_once_naming_it_and_what_to_check(tmp_path: Path) -> None:
    port = free_port()
    done = ray_dispatch(tmp_path, "status", "--address", f"127.0.0.1:{port}")
    one_line_from(done, 1, f"cannot reach the Ray cluster at 127.0.0.1:{port} (--address)", "check the address")
    by_env = ray_dispatch(tmp_path, "send", "sms", "hi", RAY_ADDRESS=f"127.0.0.1:{port}")
    one_line_from(by_env, 1, f"127.0.0.1:{port} (RAY_ADDRESS)")


def test_a_malformed_address_is_bad_input(tmp_path: Path) -> None:
    one_line_from(ray_dispatch(tmp_path, "status", "--address", "nonsense"), 2, "--address 'nonsense'", "HOST:PORT")


def test_without_an_address_or_a_record_no_cluster_is_joined(tmp_path: Path) -> None:
    done = ray_dispatch(tmp_path, "status", "--name", "mine")
    one_line_from(done, 1, "no deployment 'mine'", "started on this machine", "pass --address")


def test_a_record_whose_run_has_exited_is_dropped(tmp_path: Path) -> None:
    with mock.patch.dict(os.environ, {STATE_DIR_ENV: str(tmp_path)}):
        gone = subprocess.Popen(["true"])
        gone.wait()
        path = write_record(RunRecord("mine", "ray_dispatch", "127.0.0.1:1", gone.pid, False, False))
    done = ray_dispatch(tmp_path, "status", "--name", "mine")
    one_line_from(done, 1, "'mine'", "is not running", f"(pid {gone.pid}) has exited")
    assert not path.exists()


def test_a_second_run_of_a_running_deployment_is_refused_before_starting_anything(tmp_path: Path) -> None:
    with mock.patch.dict(os.environ, {STATE_DIR_ENV: str(tmp_path)}):
        write_record(RunRecord("default", "ray_dispatch", "127.0.0.1:1", os.getpid(), False, False))
    done = ray_dispatch(tmp_path, "run", "examples/seed.yaml")
    one_line_from(done, 1, "'default'", "already runs on this machine", f"pid {os.getpid()}", "another --name")
    assert done.stdout == ""


def test_run_detach_without_a_cluster_to_outlive_it_is_refused(tmp_path: Path) -> None:
    done = ray_dispatch(tmp_path, "run", "examples/seed.yaml", "--detach")
    one_line_from(done, 2, "--detach needs a Ray cluster", "--address")


def test_an_address_that_answers_but_is_not_ray_is_given_up_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as not_ray:  # accepts TCP connections (the backlog) but never speaks Ray's protocol
        not_ray.bind(("127.0.0.1", 0))
        not_ray.listen(64)
        address = f"127.0.0.1:{not_ray.getsockname()[1]}"
        done = ray_dispatch(tmp_path, "status", "--address", address)
    line = one_line_from(done, 1, f"cannot connect to the Ray cluster at {address} (--address)")
    assert "did not join it" in line and "GCS port" in line
