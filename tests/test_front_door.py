"""The CLI's and the API's front door without Ray: one ``error:`` line per mistake, arguments checked by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ray_dispatch.cli import main
from ray_dispatch.core.config import load_config
from ray_dispatch.core.errors import ConfigError, InvalidMessage


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
