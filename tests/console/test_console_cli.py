"""`ray-dispatch run` prints the console line; `ray-dispatch console` prints it again (in-process, session Ray)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import yaml
from click.testing import CliRunner, Result

import ray_dispatch
from actors.naming import console_actor_name, dispatcher_names
from ray_dispatch.cli import main
from tests.console.deployment import CONFIG, token_and_port

pytestmark = pytest.mark.ray

NAMESPACE = "console_cli_tests"
REPO_ROOT = Path(__file__).resolve().parents[2]
CONSOLE_LINE = re.compile(r"^console: (http://127\.0\.0\.1:\d+/\?token=[\w-]+)$", re.M)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("console_cli") / "dispatcher.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return str(path)


@contextlib.contextmanager
def stopped_after(name: str) -> Iterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(ray_dispatch.DeploymentNotFound):
            ray_dispatch.attach(name, NAMESPACE).shutdown()


def test_run_prints_the_console_line_console_prints_it_again_and_stop_ends_it(
    ray_session: None, config_file: str
) -> None:
    name = "with-console"
    with stopped_after(name):
        started = cli("run", config_file, "--detach", "--name", name, "--namespace", NAMESPACE)
        assert started.exit_code == 0, (started.stdout, started.stderr)
        [url] = CONSOLE_LINE.findall(started.stdout)
        token, port = token_and_port(url)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert json.load(answer)["name"] == name

        again = cli("console", "--deployment", name, "--namespace", NAMESPACE)
        assert again.exit_code == 0, again.stderr
        assert again.stdout.strip() == url

        assert cli("stop", "--name", name, "--namespace", NAMESPACE).exit_code == 0
        with pytest.raises(ValueError):
            ray.get_actor(console_actor_name(name), namespace=NAMESPACE)


def test_no_console_starts_none_and_console_says_so(ray_session: None, config_file: str) -> None:
    name = "no-console"
    with stopped_after(name):
        started = cli("run", config_file, "--detach", "--no-console", "--name", name, "--namespace", NAMESPACE)
        assert started.exit_code == 0, (started.stdout, started.stderr)
        assert "console:" not in started.stdout
        line = one_error_line(cli("console", "--name", name, "--namespace", NAMESPACE), 1)
        assert f"deployment {name!r}" in line and "runs no console" in line and "--no-console" in line


def test_a_console_port_in_use_is_one_line_and_starts_nothing(ray_session: None, config_file: str) -> None:
    name = "busy-console"
    with stopped_after(name), socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            "run", config_file, "--detach", "--console-port", str(port), "--name", name, "--namespace", NAMESPACE
        )
        line = one_error_line(result, 2)
        assert f"console: cannot listen on 127.0.0.1:{port}" in line and "--console-port" in line
        assert dispatcher_names(name, NAMESPACE) == []


def test_console_of_an_unknown_deployment_is_one_line(ray_session: None) -> None:
    line = one_error_line(cli("console", "--deployment", "nobody", "--namespace", NAMESPACE), 1)
    assert "no deployment named 'nobody'" in line


def test_console_finds_the_deployment_before_importing_ray() -> None:
    """Ray reads RAY_AUTH_MODE when imported: the record's token setting must be in place first (as for status)."""
    code = (
        "import sys\n"
        "import ray_dispatch.cli as cli\n"
        "def attach(name, namespace, address):\n"
        "    print('ray imported before attach:', 'ray' in sys.modules, name, flush=True)\n"
        "    raise SystemExit(0)\n"
        "cli._attach = attach\n"
        "cli.main(['console', '--deployment', 'seed'])\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert child.stdout.strip() == "ray imported before attach: False seed", (child.stdout, child.stderr)
