"""The CLI's and the API's front door without Ray: one ``error:`` line per mistake, arguments checked by name."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from ray_dispatch.cli import main


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
